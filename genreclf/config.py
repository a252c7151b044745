"""Frozen dataclasses that generate their own argparse flags, so every default lives in one place.

    @dataclass(frozen=True)
    class MelSpec:
        n_mels: int = field(default=128, metadata={"help": "mel bands"})

    add_flags(parser, MelSpec)          # adds --n-mels (int, default 128)
    spec = from_args(MelSpec, args)     # MelSpec(n_mels=args.n_mels)

Tuples are given comma-separated on the command line (`--augment noise,pitch`).
"""
import dataclasses
import hashlib
import json


def _parse_tuple(item_type):
    def parse(text):
        return tuple(item_type(x) for x in text.split(",") if x.strip())
    return parse


def add_flags(parser, cls, exclude=()):
    """Add one `--flag` per field of dataclass `cls` to `parser` (or an argument group)."""
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        helptext = f.metadata.get("help", "")
        default = f.default
        kwargs = {"default": default, "dest": f.name}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if f.type in (bool, "bool"):
            group.add_argument(flag, action="store_true", help=helptext, **kwargs)
            continue
        if isinstance(default, tuple):
            item = type(default[0]) if default else f.metadata.get("item", str)
            kwargs["type"] = _parse_tuple(item)
            shown = ",".join(map(str, default)) or "none"
        else:
            kwargs["type"] = type(default) if default is not None else str
            shown = default
        group.add_argument(flag, help=f"{helptext} (default: {shown})", **kwargs)


def from_args(cls, args, **overrides):
    """Build `cls` from the parsed flags that `add_flags` created."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)


def to_dict(obj):
    return dataclasses.asdict(obj)


def digest(obj, n=10):
    """Short stable hash of a dataclass (or dict): the key of a cache made with these parameters."""
    d = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    blob = json.dumps(d, sort_keys=True, default=list).encode()
    return hashlib.sha1(blob).hexdigest()[:n]
