"""The CIFAR ResNet of ../shared/data as a plain torch nn.Module written the way akamaster/pytorch_resnet_cifar10
writes it (option-A lambda shortcut, avg_pool2d over the whole map, ``view(size(0), -1)``), and its float ONNX export
by ``torch.onnx.export``: a model no part of fxbn wrote, for the ONNX importer's end-to-end checks.

    python -m experiments.torch_resnet OUT.onnx [--net resnet20] [--fold-bn]
"""
import argparse
import sys

import numpy as np


def cifar_resnet_module(npz_path):
    """The akamaster ResNet (blocks per stage from the state_dict names) in eval mode, weights from `npz_path`."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    arrays = dict(np.load(npz_path))
    blocks = 1 + max(int(k.split(".")[1]) for k in arrays if k.startswith("layer1."))

    class LambdaLayer(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return self.fn(x)

    class BasicBlock(nn.Module):
        def __init__(self, in_planes, planes, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.shortcut = nn.Sequential()
            if stride != 1 or in_planes != planes:
                self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2],
                                                            (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out += self.shortcut(x)
            return F.relu(out)

    class ResNet(nn.Module):
        def __init__(self, num_blocks, num_classes=10):
            super().__init__()
            self.in_planes = 16
            self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.layer1 = self._make_layer(16, num_blocks, stride=1)
            self.layer2 = self._make_layer(32, num_blocks, stride=2)
            self.layer3 = self._make_layer(64, num_blocks, stride=2)
            self.linear = nn.Linear(64, num_classes)

        def _make_layer(self, planes, num_blocks, stride):
            layers = []
            for s in [stride] + [1] * (num_blocks - 1):
                layers.append(BasicBlock(self.in_planes, planes, s))
                self.in_planes = planes
            return nn.Sequential(*layers)

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.layer3(self.layer2(self.layer1(out)))
            out = F.avg_pool2d(out, out.size()[3])
            out = out.view(out.size(0), -1)
            return self.linear(out)

    model = ResNet(blocks)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise ValueError(f"{npz_path}: state_dict mismatch (missing {missing}, unexpected {unexpected})")
    return model.eval()


def export_onnx(npz_path, out_path, fold_bn=False, size=32):
    """torch.onnx.export (TorchScript exporter, opset 17, dynamic batch) of the module to a float ONNX file.

    fold_bn=False keeps every BatchNormalization node (training=PRESERVE on the eval module); fold_bn=True lets the
    exporter fold BN into the conv weights and biases (its default for eval modules)."""
    import torch

    model = cifar_resnet_module(npz_path)
    x = torch.zeros(1, 3, size, size)
    torch.onnx.export(model, (x,), str(out_path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, opset_version=17, dynamo=False,
                      training=torch.onnx.TrainingMode.EVAL if fold_bn else torch.onnx.TrainingMode.PRESERVE,
                      do_constant_folding=True)
    return out_path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.torch_resnet", description=__doc__.splitlines()[0])
    p.add_argument("out", help="output .onnx file")
    p.add_argument("--net", default="resnet20", choices=["resnet20", "resnet56"])
    p.add_argument("--fold-bn", action="store_true", help="let the exporter fold BN into the conv weights")
    args = p.parse_args(argv)
    from experiments import data

    export_onnx(data.data_dir() / "cifar10" / f"{args.net}.npz", args.out, args.fold_bn)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
