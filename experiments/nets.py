"""The shared data's networks as qgraph.Graph objects (read by path; nothing is copied)."""
import json
import pathlib

import numpy as np

from fxbn.network import Graph, Node, same_padding
from fxbn import importers

CIFAR_MEAN = (0.485, 0.456, 0.406)
CIFAR_STD = (0.229, 0.224, 0.225)


def cifar_resnet(path):
    """ResNet-20/56 (akamaster option A) from its state_dict npz; blocks per stage from the layer names."""
    arrays = dict(np.load(path))
    blocks = 1 + max(int(k.split(".")[1]) for k in arrays if k.startswith("layer1."))
    eps = 1e-5
    nodes = [Node("input", "input")]

    def conv_bn(name_conv, name_bn, src, stride, act):
        w = np.transpose(arrays[f"{name_conv}.weight"], (2, 3, 1, 0))  # OIHW -> HWIO
        nodes.append(Node(name_conv, "conv", (src,), {"w": w, "stride": stride, "pad": (1, 1, 1, 1)}))
        nodes.append(Node(name_bn, "bn", (name_conv,), {"bn": importers.bn_params(arrays, name_bn, eps), "act": act}))
        return name_bn

    x = conv_bn("conv1", "bn1", "input", 1, "relu")
    channels = 16
    for stage, planes in enumerate((16, 32, 64), start=1):
        for i in range(blocks):
            stride = 2 if stage > 1 and i == 0 else 1
            p = f"layer{stage}.{i}"
            h = conv_bn(f"{p}.conv1", f"{p}.bn1", x, stride, "relu")
            h = conv_bn(f"{p}.conv2", f"{p}.bn2", h, 1, None)
            shortcut = x
            if stride != 1 or channels != planes:
                nodes.append(Node(f"{p}.shortcut", "shortcut_a", (x,), {"out_channels": planes}))
                shortcut = f"{p}.shortcut"
            nodes.append(Node(f"{p}.add", "add", (h, shortcut), {"relu": True}))
            x, channels = f"{p}.add", planes
    nodes.append(Node("avgpool", "gap", (x,)))
    nodes.append(Node("linear", "dense", ("avgpool",), {"w": arrays["linear.weight"].T,
                                                         "bias": arrays["linear.bias"]}))
    return Graph(nodes, CIFAR_MEAN, CIFAR_STD)


def _keras_layers(model_json_path):
    j = json.loads(pathlib.Path(model_json_path).read_text())
    return j.get("model_config", j)["config"]["layers"]


def keras_graph(npz_path, model_json_path, input_size, input_mean, input_std, key="{layer}/{weight}",
                bn_style="keras"):
    """A Keras functional model (Conv2D, BatchNormalization, Activation relu, LeakyReLU, Add, ZeroPadding2D,
    MaxPooling2D, GlobalAveragePooling2D, Dense) as a Graph; activations fused into the BN or Add before them."""
    arrays = np.load(npz_path)
    layers = _keras_layers(model_json_path)
    nodes, alias, shapes = [], {}, {}
    pending_pad = {}
    h = w = input_size

    def src_of(layer):
        return alias[layer["inbound_nodes"][0][0][0]]

    for layer in layers:
        name, cls, cfg = layer["name"], layer["class_name"], layer["config"]
        if cls == "InputLayer":
            nodes.append(Node(name, "input"))
            alias[name], shapes[name] = name, (h, w)
            continue
        src = src_of(layer)
        hw = shapes[src]
        if cls == "ZeroPadding2D":  # folded into the consuming conv / pool as extra padding
            (t, b), (l, r) = cfg["padding"]
            alias[name] = f"{src}@pad{t},{b},{l},{r}"
            shapes[alias[name]] = (hw[0] + t + b, hw[1] + l + r)
            pending_pad[alias[name]] = (src, (t, b, l, r))
            continue
        real_src, extra_pad = src, (0, 0, 0, 0)
        if src in pending_pad:
            real_src, extra_pad = pending_pad[src]
        if cls in ("Conv2D", "DepthwiseConv2D"):
            k = cfg["kernel_size"][0]
            stride = cfg["strides"][0]
            size = shapes[src]
            if cfg["padding"] == "same":
                pad = same_padding(size[0], k, stride) + same_padding(size[1], k, stride)
            else:
                pad = (0, 0, 0, 0)
            pad = tuple(p + e for p, e in zip(pad, extra_pad))
            if cls == "DepthwiseConv2D":
                wt = np.asarray(arrays[key.format(layer=name, weight="depthwise_kernel")])[:, :, :, 0]
            else:
                wt = np.asarray(arrays[key.format(layer=name, weight="kernel")])
            bias = np.asarray(arrays[key.format(layer=name, weight="bias")]) if cfg.get("use_bias") else None
            out = ((size[0] - k) // stride + 1, (size[1] - k) // stride + 1) if cfg["padding"] == "valid" else \
                (-(-size[0] // stride), -(-size[1] // stride))
            nodes.append(Node(name, "conv", (real_src,), {"w": wt, "stride": stride, "pad": pad, "bias": bias,
                                                          "depthwise": cls == "DepthwiseConv2D"}))
            alias[name], shapes[name] = name, out
        elif cls == "BatchNormalization":
            bn = importers.bn_params(arrays, name, cfg["epsilon"], bn_style)
            nodes.append(Node(name, "bn", (src,), {"bn": bn, "act": None}))
            alias[name], shapes[name] = name, hw
        elif cls in ("Activation", "ReLU", "LeakyReLU"):
            if cls == "LeakyReLU":
                act = ("leaky", float(cfg["alpha"]))
            elif cls == "ReLU":
                act = "relu6" if cfg.get("max_value") == 6 else "relu"
            else:
                act = cfg["activation"]
                if act != "relu":
                    raise ValueError(f"{name}: activation {act} not supported")
            prev = next(n for n in nodes if n.name == src)
            if prev.op == "bn":
                prev.attrs["act"] = act
            elif prev.op == "add" and act == "relu":
                prev.attrs["relu"] = True
            else:
                raise ValueError(f"{name}: activation after {prev.op} not supported")
            alias[name], shapes[name] = src, hw
        elif cls == "Add":
            a, b = (alias[n[0]] for n in layer["inbound_nodes"][0])
            nodes.append(Node(name, "add", (a, b), {"relu": False}))
            alias[name], shapes[name] = name, hw
        elif cls == "MaxPooling2D":
            k, stride = cfg["pool_size"][0], cfg["strides"][0]
            size = shapes[src]
            pad = same_padding(size[0], k, stride) + same_padding(size[1], k, stride) \
                if cfg["padding"] == "same" else (0, 0, 0, 0)
            pad = tuple(p + e for p, e in zip(pad, extra_pad))
            nodes.append(Node(name, "maxpool", (real_src,), {"k": k, "stride": stride, "pad": pad}))
            alias[name] = name
            shapes[name] = (-(-size[0] // stride), -(-size[1] // stride)) if cfg["padding"] == "same" else \
                ((size[0] - k) // stride + 1, (size[1] - k) // stride + 1)
        elif cls == "GlobalAveragePooling2D":
            nodes.append(Node(name, "gap", (src,)))
            alias[name], shapes[name] = name, (1, 1)
        elif cls == "Dense":
            nodes.append(Node(name, "dense", (src,), {"w": np.asarray(arrays[key.format(layer=name, weight="kernel")]),
                                                      "bias": np.asarray(arrays[key.format(layer=name,
                                                                                           weight="bias")])}))
            alias[name], shapes[name] = name, (1, 1)
        else:
            raise ValueError(f"{name}: layer class {cls} not supported")
    # a conv not followed by BN feeding the pool is the classifier (Darknet)
    bn_srcs = {n.src[0] for n in nodes if n.op == "bn"}
    for n in nodes:
        if n.op == "conv" and n.name not in bn_srcs:
            n.attrs["logits"] = True
    return Graph(nodes, input_mean, input_std, output=nodes[-1].name)


def resnet50(data_dir):
    # caffe preprocessing: BGR, minus mean, no scaling. The graph's input is RGB pixels; x = (p/255 - m)/std with
    # std = 1/255 and m = mean/255 gives p - mean; the channel flip goes into conv1's kernel (input channels).
    d = pathlib.Path(data_dir) / "imagenet"
    g = keras_graph(d / "resnet50.npz", d / "resnet50.model.json", 224,
                    np.array([123.68, 116.779, 103.939]) / 255.0, np.full(3, 1 / 255.0))
    conv1 = g.by_name["conv1"]
    conv1.attrs["w"] = conv1.attrs["w"][:, :, ::-1, :].copy()  # kernel expects BGR: reorder its input channels
    return g


def darknet_tiny(data_dir):
    d = pathlib.Path(data_dir) / "imagenet"
    return keras_graph(d / "darknet_tiny.npz", d / "darknet_tiny.model.json", 224, np.zeros(3), np.ones(3))


def mobilenet_v1(data_dir, alpha=0.25):
    """Keras MobileNet v1 (width `alpha`, no classifier) as a feature extractor: its output is the last ReLU6."""
    arrays = np.load(pathlib.Path(data_dir) / "imagenet" / f"mobilenet_v1_{alpha}_notop.npz")
    eps = 1e-3

    def kernel(layer, weight):
        return np.asarray(arrays[f"{layer}/{layer}/{weight}:0"])

    nodes = [Node("input", "input")]

    def conv_bn(conv, src, w, stride, pad, depthwise):
        nodes.append(Node(conv, "conv", (src,), {"w": w, "stride": stride, "pad": pad, "depthwise": depthwise}))
        bn = f"{conv}_bn"
        nodes.append(Node(bn, "bn", (conv,), {"bn": importers.bn_params(arrays, bn, eps, "keras_tf"), "act": "relu6"}))
        return bn

    # Keras: stride-2 layers pad ((0, 1), (0, 1)) then 'valid'; stride-1 layers 'same' (1 on each side for 3x3)
    x = conv_bn("conv1", "input", kernel("conv1", "kernel"), 2, (0, 1, 0, 1), False)
    strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    for i, stride in enumerate(strides, start=1):
        pad = (0, 1, 0, 1) if stride == 2 else (1, 1, 1, 1)
        x = conv_bn(f"conv_dw_{i}", x, kernel(f"conv_dw_{i}", "depthwise_kernel")[:, :, :, 0], stride, pad, True)
        x = conv_bn(f"conv_pw_{i}", x, kernel(f"conv_pw_{i}", "kernel"), 1, (0, 0, 0, 0), False)
    return Graph(nodes, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), output=x)
