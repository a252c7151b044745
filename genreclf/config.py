"""Frozen dataclasses that generate their own argparse flags, so every default lives in one place.

    @dataclass(frozen=True)
    class MelSpec:
        n_mels: int = field(default=128, metadata={"help": "mel bands"})

    add_flags(parser, MelSpec)          # adds --n-mels (int, default 128)
    spec = from_args(MelSpec, args)     # MelSpec(n_mels=args.n_mels)

Tuples are given comma-separated on the command line (`--augment noise,pitch`). A numeric field
may carry its valid range, checked by argparse as the flag is parsed (a usage error, exit 2):

        lr: float = field(default=1e-3, metadata={"help": "learning rate", "range": POSITIVE})

A boolean field whose default is True gets `--flag/--no-flag`.
"""
import argparse
import dataclasses
import hashlib
import json
import math


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric flag accepts: finite, at least (or above) `low`, at most (or below)
    `high`, or one of `also` (e.g. --folds: 0 for off, else at least 2)."""
    low: float = None
    high: float = None
    low_open: bool = False   # True: low itself is not allowed
    high_open: bool = False
    also: tuple = ()

    def __contains__(self, v):
        if v in self.also:
            return True
        if not math.isfinite(v):
            return False
        above = self.low is None or (v > self.low if self.low_open else v >= self.low)
        below = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return above and below

    def __str__(self):
        words = []
        if self.low is not None:
            words.append(f"{'more than' if self.low_open else 'at least'} {self.low:g}")
        if self.high is not None:
            words.append(f"{'less than' if self.high_open else 'at most'} {self.high:g}")
        text = " and ".join(words) or "a finite number"
        return " or ".join([f"{a:g}" for a in self.also] + [text])


FINITE = Range()
POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)
FRACTION = Range(0, 1, high_open=True)  # [0, 1): label smoothing


def checked(parse, valid):
    """An argparse `type=` that parses the text with `parse` and accepts only values in `valid`
    (a Range): `--lr nan` gives `argument --lr: nan: not a finite number (must be more than 0)`."""
    def check(text):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: not {'an integer' if parse is int else 'a number'}") from None
        if value not in valid:
            finite = not isinstance(value, float) or math.isfinite(value)
            raise argparse.ArgumentTypeError(f"{text}: must be {valid}" if finite else f"{text}: not a finite number (must be {valid})")
        return value
    check.__name__ = parse.__name__  # argparse names the type in its own messages
    return check


def checked_tuple(parse, valid):
    """As `checked`, for a comma-separated list (`--seeds 0,1,2`): a tuple, each item in `valid`."""
    one = checked(parse, valid)

    def check(text):
        return tuple(one(x.strip()) for x in text.split(",") if x.strip())
    return check


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
            action = argparse.BooleanOptionalAction if default else "store_true"  # on by default: --no-X turns it off
            group.add_argument(flag, action=action, help=helptext, **kwargs)
            continue
        if isinstance(default, tuple):
            item = type(default[0]) if default else f.metadata.get("item", str)
            kwargs["type"] = _parse_tuple(item)
            shown = ",".join(map(str, default)) or "none"
        else:
            kwargs["type"] = type(default) if default is not None else str
            if "range" in f.metadata:
                kwargs["type"] = checked(kwargs["type"], f.metadata["range"])
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
