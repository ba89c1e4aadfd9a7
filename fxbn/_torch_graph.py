"""PyTorch side of :mod:`fxbn.importers`: BN layers paired by the traced data flow (torch.fx), and calibration.

Imported only by :func:`fxbn.importers.from_torch` / :func:`fxbn.importers.calibrate_torch` (torch is optional).
"""
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn import functional as F

_BN = nn.modules.batchnorm._BatchNorm          # BatchNorm1d/2d/3d, SyncBatchNorm, LazyBatchNorm*
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_PASS_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_PASS_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d)
_RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_, F.relu_)
_RELU6_FUNCTIONS = (F.relu6,)
_UNFOLDED = {nn.Hardswish: "hardswish", nn.SiLU: "silu", nn.GELU: "gelu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh",
             nn.Mish: "mish", nn.ELU: "elu", nn.SELU: "selu", nn.Hardsigmoid: "hardsigmoid", nn.PReLU: "prelu",
             nn.LeakyReLU: "leaky_relu", nn.Softplus: "softplus", nn.CELU: "celu"}
_UNFOLDED_FUNCTIONS = {F.hardswish: "hardswish", F.silu: "silu", F.gelu: "gelu", torch.sigmoid: "sigmoid",
                       F.sigmoid: "sigmoid", torch.tanh: "tanh", F.tanh: "tanh", F.mish: "mish", F.elu: "elu",
                       F.selu: "selu", F.hardsigmoid: "hardsigmoid", F.leaky_relu: "leaky_relu",
                       F.softplus: "softplus"}


@dataclass
class Plan:
    """One BN to import: what its integer input is and which graph nodes carry its input and output tensors."""
    bn: str                 # BN module name
    kind: str               # "conv_bn" (input: the conv accumulator) or "affine" (input: the quantized tensor)
    source: str             # conv module name (conv_bn); the module or graph node the BN reads (affine)
    in_node: str            # node whose output is the quantized input (the conv's input, or the BN's input)
    out_node: str           # node whose output is the layer output (the folded activation, else the BN)
    activation: object      # folded into the clamp: None, "relu" or "relu6"
    follows: object         # applied after the layer, not folded: None or a name ("hardswish", ...)
    conv: object = None     # the Conv/Linear module (conv_bn)
    module: object = None   # the BN module


def trace(module):
    """A torch.fx GraphModule of `module` (itself when it already is one); ValueError naming the failure."""
    if isinstance(module, fx.GraphModule):
        return module
    try:
        return fx.symbolic_trace(module)
    except Exception as e:      # data-dependent control flow, unimplemented forward, ...
        msg = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise ValueError(f"cannot trace {type(module).__name__} with torch.fx ({type(e).__name__}: {msg}); BN "
                         "layers are paired by the traced data flow: pass a torch.fx.GraphModule traced your way "
                         "(e.g. a custom Tracer with leaf modules)") from None


def _target_module(gm, node):
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _is_pass_through(gm, node):
    if node.op == "call_module":
        return isinstance(_target_module(gm, node), _PASS_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    return node.op == "call_method" and node.target in ("contiguous", "clone")


def _activation(gm, node):
    """("fold", "relu"/"relu6"), ("follows", name) or (None, None) for the node applied after a BN."""
    if node.op == "call_module":
        m = _target_module(gm, node)
        if type(m) is nn.ReLU:
            return "fold", "relu"
        if type(m) is nn.ReLU6 or (type(m) is nn.Hardtanh and m.min_val == 0 and m.max_val == 6):
            return "fold", "relu6"
        for cls, name in _UNFOLDED.items():
            if isinstance(m, cls):
                return "follows", name
        if isinstance(m, nn.Hardtanh):
            return "follows", f"hardtanh({m.min_val}, {m.max_val})"
        return None, None
    if node.op == "call_function":
        if node.target in _RELU_FUNCTIONS:
            return "fold", "relu"
        if node.target in _RELU6_FUNCTIONS:
            return "fold", "relu6"
        if node.target is F.hardtanh:
            lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", -1.0)
            hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max_val", 1.0)
            return ("fold", "relu6") if (lo, hi) == (0, 6) else ("follows", f"hardtanh({lo}, {hi})")
        if node.target in _UNFOLDED_FUNCTIONS:
            return "follows", _UNFOLDED_FUNCTIONS[node.target]
        if node.target in (torch.clamp, torch.clip) and len(node.args) == 3 and tuple(node.args[1:]) == (0, 6):
            return "fold", "relu6"
        return None, None
    if node.op == "call_method":
        if node.target in ("relu", "relu_"):
            return "fold", "relu"
        if node.target in ("sigmoid", "tanh"):
            return "follows", node.target
    return None, None


def _fused_notes(module):
    """Names of modules that torch.ao fuse_modules / intrinsic QAT produce (BN already folded away)."""
    out = []
    for name, m in module.named_modules():
        if type(m).__module__.startswith(("torch.ao.nn.intrinsic", "torch.nn.intrinsic")):
            out.append(f"{name} ({type(m).__name__})")
    return out


def plan(module):
    """(GraphModule, [Plan], [(bn name, reason)], [note]) for `module` (see :func:`fxbn.importers.from_torch`)."""
    bns_declared = [name for name, m in module.named_modules() if isinstance(m, _BN)]
    gm = trace(module)
    plans, skipped, notes = [], [], []
    calls = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(_target_module(gm, node), _BN):
            calls.setdefault(node.target, []).append(node)
        elif node.op == "call_function" and node.target in (F.batch_norm, torch.batch_norm):
            skipped.append((f"<{node.name}>", "functional batch_norm call (no BN module): not imported; use "
                                              "nn.BatchNorm modules"))
    for name in bns_declared:
        if name not in calls:
            skipped.append((name, "BN module is not used by forward() (not in the traced graph)"))
    for name, nodes in calls.items():
        bn = gm.get_submodule(name)
        if len(nodes) > 1:
            skipped.append((name, f"BN module is called {len(nodes)} times in forward(): one module cannot be one "
                                  "integer layer per call"))
            continue
        node = nodes[0]
        if bn.training:
            raise ValueError(f"BN {name!r} is in training mode: call module.eval() (BN running statistics are "
                             "what is folded)")
        if bn.running_mean is None or bn.running_var is None:
            skipped.append((name, "no running statistics (track_running_stats=False): it normalizes with the "
                                  "batch's statistics at inference, which is not a per-channel affine map"))
            continue
        src = node.args[0]
        prod = src
        while isinstance(prod, fx.Node) and _is_pass_through(gm, prod):
            prod = prod.args[0]
        producer = _target_module(gm, prod) if isinstance(prod, fx.Node) else None
        users = list(node.users)
        fold, follows = None, None
        out_node = node
        if len(users) == 1:
            how, what = _activation(gm, users[0])
            if how == "fold":
                fold, out_node = what, users[0]
            elif how == "follows":
                follows = what
        if isinstance(producer, _TRANSPOSED):
            skipped.append((name, f"input is {type(producer).__name__} {prod.target!r}: transposed convolutions "
                                  "are not supported"))
            continue
        if isinstance(producer, _CONV):
            out_features = producer.out_features if isinstance(producer, nn.Linear) else producer.out_channels
            if out_features != bn.num_features:
                skipped.append((name, f"{type(producer).__name__} {prod.target!r} has {out_features} outputs, the "
                                      f"BN has {bn.num_features} channels"))
                continue
            conv_in = prod.args[0]
            if not isinstance(conv_in, fx.Node):
                skipped.append((name, f"input of {prod.target!r} is not a graph tensor"))
                continue
            plans.append(Plan(name, "conv_bn", prod.target, conv_in.name, out_node.name, fold, follows,
                              conv=producer, module=bn))
        elif isinstance(src, fx.Node):
            label = src.target if src.op == "call_module" else src.name    # a module's name, else the node's
            plans.append(Plan(name, "affine", label, src.name, out_node.name, fold, follows, module=bn))
        else:
            skipped.append((name, "input is not a graph tensor"))
    if not calls:
        fused = _fused_notes(module)
        notes.append("no BatchNorm module in the traced graph" + (
            f"; fused modules (torch.ao fuse_modules: BN already folded into the conv weights): {', '.join(fused)}"
            if fused else ""))
    return gm, plans, skipped, notes


def record_ranges(gm, node_names, batches, method, percentile, max_samples):
    """Per node name: (min, max) and, for percentile, a uniform subsample of the values, over `batches`."""
    wanted = set(node_names)
    stats = {n: {"min": float("inf"), "max": float("-inf"), "samples": []} for n in wanted}
    gen = torch.Generator().manual_seed(0)

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.name in wanted:
                if not torch.is_tensor(out):
                    raise ValueError(f"node {n.name!r} does not produce a tensor")
                v = out.detach().reshape(-1).to(torch.float64)
                if v.numel() and not torch.isfinite(v).all():
                    raise ValueError(f"node {n.name!r} produced a non-finite value during calibration")
                s = stats[n.name]
                if v.numel():
                    s["min"] = min(s["min"], float(v.min()))
                    s["max"] = max(s["max"], float(v.max()))
                    if method == "percentile":
                        if v.numel() > max_samples:
                            v = v[torch.randint(v.numel(), (max_samples,), generator=gen)]
                        s["samples"].append(v.numpy())
            return out

    count = 0
    with torch.no_grad():
        for batch in batches:
            args = batch if isinstance(batch, (tuple, list)) else (batch,)
            args = [torch.as_tensor(a) if not torch.is_tensor(a) else a for a in args]
            Recorder(gm).run(*args)
            count += 1
    if count == 0:
        raise ValueError("batches is empty: calibration needs at least one batch")
    return stats


__all__ = ["Plan", "trace", "plan", "record_ranges"]
