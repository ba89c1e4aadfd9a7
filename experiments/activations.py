"""The activation quantization of a calibrated experiments graph as a ``python -m verify --activations`` file.

    python -m experiments.activations resnet20 --out resnet20.activations.json            # as experiments.run
    python -m experiments.activations resnet20 --lossless --out acts.json                  # 20 lossless images
    python -m verify ../shared/data/cifar10/resnet20.npz --activations resnet20.activations.json

For any other model file (Keras topology + weights, a torch state_dict with its architecture) and an image
directory, use ``python -m fxbn.calibrate`` (the library's calibration CLI; README "Importing your own model").

The layers ``python -m verify`` then builds from the model file are those of the experiments' integer pipeline
(same weights quantization, exact accumulator bounds, rounding and solver options). Schema: verify/model.py.
"""
import argparse
import json
import pathlib
import sys

from fxbn.network_io import activations_json

MODEL_FILES = {"resnet20": ("cifar10", "resnet20.npz"), "resnet56": ("cifar10", "resnet56.npz"),
               "resnet50": ("imagenet", "resnet50.npz"), "darknet_tiny": ("imagenet", "darknet_tiny.npz"),
               "mobilenet": ("imagenet", "mobilenet_v1_0.25_notop.npz")}


def main(argv=None):
    from experiments import data, nets

    p = argparse.ArgumentParser(prog="python -m experiments.activations", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("net", choices=sorted(MODEL_FILES))
    p.add_argument("--out", "-o", type=pathlib.Path, required=True, help="activations JSON to write")
    p.add_argument("--data", type=pathlib.Path, default=data.data_dir())
    p.add_argument("--lossless", action="store_true", help="CIFAR-10: calibrate on the 20 lossless PNG images")
    p.add_argument("--calib-per-class", type=int, default=50, help="CIFAR-10 test images per class (as run.py)")
    p.add_argument("--calib", type=int, default=200, help="ImageNet sample images (as run.py)")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--method", default="minmax", choices=["minmax", "percentile"])
    p.add_argument("--percentile", type=float, default=99.99)
    p.add_argument("--rounding", default="half_up", choices=["half_even", "half_up", "half_away", "floor"])
    args = p.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"data directory {args.data} not found (set FXBN_DATA)")
    cifar = args.net in ("resnet20", "resnet56")
    model = args.data.joinpath(*MODEL_FILES[args.net])
    if cifar:
        graph = nets.cifar_resnet(model)
        if args.lossless:
            calib, _ = data.cifar_lossless(args.data)
            desc = "the 20 lossless CIFAR-10 test images"
        else:
            calib, _ = data.cifar_test(args.data, limit_per_class=args.calib_per_class)
            desc = f"the first {args.calib_per_class} CIFAR-10 JPEG test images of each class"
    else:
        graph = {"resnet50": nets.resnet50, "darknet_tiny": nets.darknet_tiny,
                 "mobilenet": nets.mobilenet_v1}[args.net](args.data)
        darknet = args.net == "darknet_tiny"
        calib, _, _ = data.imagenet_images(args.data, size=224 if darknet else 256, crop=None if darknet else 224,
                                           limit=args.calib)
        desc = f"the first {len(calib)} ImageNet sample images"
    graph.calibrate([calib[i:i + args.batch] for i in range(0, len(calib), args.batch)], method=args.method,
                    percentile=args.percentile)
    graph.quantize(rounding=args.rounding)
    acts = activations_json(graph, model, {"images": desc, "method": args.method,
                                           **({"percentile": args.percentile} if args.method == "percentile" else {})})
    args.out.write_text(json.dumps(acts, indent=1) + "\n")
    print(f"wrote {args.out}: {len(acts['layers'])} BN layers of {model}", file=sys.stderr)


if __name__ == "__main__":
    main()
