"""Classify your own music: genre probabilities per file, from a trained checkpoint.

    python predict.py song.mp3 my_music/ --top-k 3               # the shipped model (pretrained/)
    python predict.py song.ogg --timeline --format csv --output song.csv --plot song.png
    python predict.py song.mp3 --checkpoint last                 # your newest run (or a run folder, a .pt)
    python predict.py --musicnn-tags song.wav                  # musicnn's own tags, no training needed
    python predict.py song.wav --musicnn-tags --musicnn-model MTT_musicnn

Every file given or found gets one line: its result, or `error: <file>: <problem>` on stderr (and,
in JSON and CSV, a record with its error). The exit code is 1 when any file failed. Files are
decoded by --workers processes while the model runs on the files before them. Ctrl+C writes the
records of the files done so far (to --output, or standard output) and exits with 130.
"""
import argparse
import sys

from tqdm import tqdm

from genreclf import audio, predict
from genreclf import predict_output as output
from genreclf.checkpoint import load_model
from genreclf.config import FINITE, NON_NEGATIVE, checked
from genreclf.device import resolve_device
from genreclf.errors import UserError, run_cli
from genreclf.io import write_text
from genreclf.musicnn import MODELS as MUSICNN_MODELS
from genreclf.plots import save_timeline

TAGGER = "MSD_musicnn"  # --musicnn-model's default; None there tells us whether it was given


def _argv(argv):
    """Keep the old spelling `--musicnn-tags MTT_musicnn` (and `--musicnn-tags=MTT_musicnn`): a model
    name right after the flag becomes --musicnn-model. The flag itself takes no value, so
    `--musicnn-tags song.wav` leaves the path a path."""
    out = []
    for a in argv:
        if a.startswith("--musicnn-tags="):
            out += ["--musicnn-tags", "--musicnn-model=" + a.split("=", 1)[1]]
        elif out and out[-1] == "--musicnn-tags" and a in MUSICNN_MODELS:
            out.append("--musicnn-model=" + a)
        else:
            out.append(a)
    return out


def _problems(paths):
    """(files, error lines, warning lines) for the paths given: audio.find_audio's problems are
    errors, except its notes that it kept one of two formats, met a folder twice or left out a
    folder's file in a format it does not read (warnings)."""
    files, problems = audio.find_audio(paths)
    notes = [p for p in problems if ": kept;" in p or "already scanned" in p or ": left out: " in p]
    return files, [p for p in problems if p not in notes], notes


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or directories (searched recursively)")
    p.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="a run folder, a .pt checkpoint, or `last` (the newest run under runs/); default: the shipped model")
    p.add_argument("--musicnn-tags", action="store_true", help="print musicnn's own tags instead of genres")
    p.add_argument("--musicnn-model", default=None, choices=MUSICNN_MODELS,
                   help=f"the musicnn of --musicnn-tags (default: {TAGGER})")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--timeline", action="store_true", help="add every segment's start, end, top label and probabilities")
    p.add_argument("--format", default="table", choices=["table", "json", "csv"],
                   help="json and csv list failed files too, with an error and no probabilities; csv with --timeline: "
                        "one row per segment")
    p.add_argument("--output", default=None, help="write here instead of standard output (not an audio file name)")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="draw one file's probabilities over time (a heat map)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--workers", type=checked(int, NON_NEGATIVE), default=2, help="processes that decode and featurize files (0: none)")
    p.add_argument("--hop", type=checked(float, FINITE), default=None, metavar="SECONDS",
                   help="genre models: overlapping windows every SECONDS (more than 0, at most the segment), "
                        "probabilities averaged over them (default: the non-overlapping segment grid)")
    args = p.parse_args(_argv(argv))
    if args.top_k < 1:
        raise UserError(f"--top-k {args.top_k}: must be at least 1")
    # flags that cannot take effect together: refused, rather than one of them silently ignored
    if args.musicnn_tags:
        for flag, value in (("--checkpoint", args.checkpoint), ("--hop", args.hop)):
            if value is not None:
                raise UserError(f"{flag}: --musicnn-tags runs musicnn's own tagger, which takes no {flag}: "
                                f"leave out one of the two")
    elif args.musicnn_model:
        print(f"note: --musicnn-model {args.musicnn_model} is used with --musicnn-tags only; classifying genres",
              file=sys.stderr)
    return args


def _runner(args, device):
    """(runner, the key of its labels in the records): musicnn's tagger, or the chosen checkpoint's
    Classifier. A checkpoint the user named that cannot be loaded is one `--checkpoint` line."""
    if args.musicnn_tags:
        return predict.Tagger(args.musicnn_model or TAGGER, device), "tags"
    ckpt_path, note = predict.choose_checkpoint(args.checkpoint)
    if note:
        print(note, file=sys.stderr)
    try:
        model, ckpt = load_model(ckpt_path)
    except UserError as e:
        if args.checkpoint is None:  # the shipped model's own lines name its file
            raise
        raise UserError(f"--checkpoint {e}") from None
    return predict.Classifier(model, ckpt, device, hop=args.hop), "probabilities"


def main():
    args = _parse(sys.argv[1:])
    files, errors, notes = _problems(args.paths)
    if args.output:
        output.check_output_target(args.output, files)
    if args.plot:
        output.check_plot_target(args.plot, len(files))
    runner, key = _runner(args, resolve_device(args.device))

    for line in notes:
        print(f"warning: {output.one_line(line)}", file=sys.stderr)
    for line in errors:
        print(f"error: {output.one_line(line)}", file=sys.stderr)
    # every input gets a record, in order: what find_audio refused first, then each file found
    records = [output.failure(line.split(": ", 1)[0], line) for line in errors]
    failed, done = len(errors), 0
    progress = tqdm(total=len(files), desc="classify", unit="file", disable=len(files) < 2 or not sys.stderr.isatty())
    results = predict.predict_many(runner, files, args.workers)
    try:
        for path, out, error, warnings in results:
            if warnings:  # one line per file: a file read at two rates would otherwise warn twice
                progress.write(f"warning: {output.one_line(warnings[0])}", file=sys.stderr)
            if error:
                progress.write(f"error: {output.one_line(error)}", file=sys.stderr)
                records.append(output.failure(path, error))
                failed += 1
            else:
                records.append(output.result(path, out, runner.genres, args.top_k, args.timeline or bool(args.plot), key))
            done += 1
            progress.update()
    except KeyboardInterrupt:  # keep what is done: the records of the finished files are written below
        results.close()
        progress.close()
        _emit(records, args, runner.genres, key)
        where = args.output or "standard output"
        print(f"interrupted: {done} of {len(files)} files done; their records are in {where}", file=sys.stderr)
        return 130
    progress.close()
    drawn = [r for r in records if "timeline" in r] if args.plot else []
    if drawn:  # before the table: a reader that closes the pipe early (`| head`) leaves the picture drawn
        try:
            save_timeline(drawn[0], args.plot, key)
        except OSError as e:
            raise UserError(f"--plot {args.plot}: cannot be written ({e.strerror or e})") from None
    _emit(records, args, runner.genres, key)
    if drawn:
        print(f"note: {drawn[0]['path']}: probabilities over time in {args.plot}", file=sys.stderr)
    return 1 if failed else 0


def _emit(records, args, labels, key):
    """Write the records as --format says, to --output (atomically) or standard output."""
    if not args.timeline:  # computed for --plot only
        records = [{k: v for k, v in r.items() if k != "timeline"} for r in records]
    text = {"json": lambda: output.as_json(records),
            "csv": lambda: output.as_csv(records, labels, key),
            "table": lambda: output.as_table(records, key)}[args.format]()
    if args.output:
        write_text(args.output, text + "\n")
    elif text:
        print(text)


if __name__ == "__main__":
    run_cli(main, elsewhere="--output FILE elsewhere")
