"""A few real BN layers of each shared network for the embedded-target tests (int32 accumulator inputs with their
exact bounds; fixed activation scales, no calibration: experiments.tosa_rescale_share.network_layers), and the
inputs of experiments.targets_table (sample + range ends + every breakpoint neighbourhood).  Empty when the shared
data is absent."""
import functools
import itertools

from conftest import DATA_DIR

NETS = {"resnet20": "cifar10/resnet20.npz", "darknet_tiny": "imagenet/darknet_tiny.npz",
        "mobilenet": "imagenet/mobilenet_v1_0.25_notop.npz", "resnet50": "imagenet/resnet50.npz"}


@functools.lru_cache(maxsize=None)
def real_layers(per_net=2):
    """{"<net>_<bn>": FixedPointBN}: the first per_net BN layers of each shared network (ResNet-50's first two are
    conv1's and a 1x1 bottleneck's; MobileNet's include a depthwise layer)."""
    from experiments.tosa_rescale_share import network_layers

    out = {}
    for net, rel in NETS.items():
        if not (DATA_DIR / rel).exists():
            continue
        for name, layer in itertools.islice(network_layers(net, DATA_DIR), per_net):
            if not isinstance(layer, Exception):
                out[f"{net}_{name}".replace("/", "_").replace(".", "_")] = layer
    return out


def target_inputs(layer, sample=300, seed=0):
    from experiments.targets_table import layer_inputs

    return layer_inputs(layer, sample, seed)
