"""``model-service``: train the demo model, validate an artifact, predict from one, serve it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import ArtifactError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainOptions, train

    options = TrainOptions(
        rows=args.rows,
        rounds=args.rounds,
        max_depth=args.max_depth,
        seed=args.seed,
        name=args.name,
        version=args.model_version,
    )
    try:
        metadata = train(args.out, options, force=args.force)
    except FileExistsError as exc:
        print(f"model-service train: {exc}", file=sys.stderr)
        return EXIT_FAILED
    summary = metadata["training"]
    print(
        f"wrote {args.out}: {metadata['name']} {metadata['version']}, {summary['rounds']} rounds, "
        f"test accuracy {summary['test_accuracy']:.3f}, trained in {metadata['training_seconds']:.1f} s"
    )
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from .artifact import load_model

    try:
        model = load_model(args.path, runtime=args.runtime)
    except ArtifactError as exc:
        if args.json:
            print(json.dumps({"valid": False, "path": str(args.path), "error": str(exc)}))
        print(f"model-service validate: {args.path}: INVALID: {exc}", file=sys.stderr)
        return EXIT_FAILED
    report = {
        "valid": True,
        "path": str(model.directory),
        "name": model.name,
        "version": model.version,
        "features": len(model.features),
        "classes": len(model.labels),
        "runtime": model.runtime_for(1).name,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{args.path}: OK: {model.name} {model.version}, {report['features']} features, "
            f"{report['classes']} classes, checksums match, runtime {report['runtime']}"
        )
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    """Answer a /predict body from stdin (or --input) exactly as the service would."""
    from .app import create_app
    from .config import Settings

    body = Path(args.input).read_bytes() if args.input else sys.stdin.buffer.read()
    try:
        app = create_app(Settings(model_path=args.model, access_log=False, runtime=args.runtime))
    except ArtifactError as exc:
        print(f"model-service predict: {exc}", file=sys.stderr)
        return EXIT_FAILED
    response = app.test_client().post("/predict", data=body, content_type="application/json")
    sys.stdout.write(response.get_data(as_text=True) + "\n")
    return EXIT_OK if response.status_code == 200 else EXIT_FAILED


def _cmd_check_config(args: argparse.Namespace) -> int:
    from .config import load_settings

    try:
        settings = load_settings(args.path, environ={})
    except ValueError as exc:
        print(f"model-service check-config: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.path}: OK ({len(vars(settings))} settings)")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from .config import load_settings
    from .logs import configure_logging
    from .server import Service

    configure_logging()
    try:
        settings = load_settings(
            args.config,
            overrides={"model_path": args.model, "host": args.host, "port": args.port, "threads": args.threads},
        )
        service = Service(settings)
    except (ValueError, ArtifactError) as exc:
        print(f"model-service serve: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"model-service serve: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    service.run()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-service", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train the demo model and write an artifact directory")
    train.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    train.add_argument("--rows", type=int, default=20_000, help="generated rows (default: 20000)")
    train.add_argument("--rounds", type=int, default=200, help="boosting rounds (default: 200)")
    train.add_argument("--max-depth", type=int, default=6, help="tree depth (default: 6)")
    train.add_argument("--seed", type=int, default=42, help="seed of data and training (default: 42)")
    train.add_argument("--name", default="demo-classifier", help="model name in metadata")
    train.add_argument("--model-version", default="1.0.0", help="model version in metadata (default: 1.0.0)")
    train.add_argument("--force", action="store_true", help="replace a non-empty --out")
    train.set_defaults(func=_cmd_train)

    runtimes = ("auto", "tree", "xgboost")
    validate = sub.add_parser("validate", help="check an artifact: checksums, features, loads, predicts")
    validate.add_argument("path", type=Path, help="artifact directory")
    validate.add_argument("--runtime", choices=runtimes, default="auto", help="runtime to check (default: auto)")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.set_defaults(func=_cmd_validate)

    predict = sub.add_parser("predict", help="answer a /predict JSON body (stdin) from an artifact, offline")
    predict.add_argument("--model", type=Path, required=True, help="artifact directory")
    predict.add_argument("--input", type=Path, help="file with the JSON body (default: stdin)")
    predict.add_argument("--runtime", choices=runtimes, default="xgboost", help="runtime (default: xgboost)")
    predict.set_defaults(func=_cmd_predict)

    check = sub.add_parser("check-config", help="check a TOML settings file without starting anything")
    check.add_argument("path", type=Path, help="settings file")
    check.set_defaults(func=_cmd_check_config)

    serve = sub.add_parser("serve", help="serve an artifact over HTTP with waitress")
    serve.add_argument("--config", type=Path, help="TOML settings file (MODEL_SERVICE_* env overrides it)")
    serve.add_argument("--model", type=Path, help="artifact directory (setting model_path)")
    serve.add_argument("--host", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default: 8000)")
    serve.add_argument("--threads", type=int, help="waitress worker threads (default: 4)")
    serve.set_defaults(func=_cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
