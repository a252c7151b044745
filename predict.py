"""Classify your own music: genre probabilities per file, from a trained checkpoint.

    python predict.py song.mp3 my_music/ --top-k 3
    python predict.py song.ogg --timeline --format json --output song.json
    python predict.py song.wav --musicnn-tags MTT_musicnn      # musicnn's own tags, no training needed
"""
import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from genreclf import audio, predict
from genreclf.checkpoint import load_model
from genreclf.errors import UserError, run_cli
from genreclf.experiment import newest_run
from genreclf.io import write_text
from genreclf.musicnn import MODELS as MUSICNN_MODELS
from genreclf.train import resolve_device


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or directories (searched recursively)")
    p.add_argument("--checkpoint", default=None, help="a best.pt (default: the newest under runs/)")
    p.add_argument("--musicnn-tags", nargs="?", const="MSD_musicnn", choices=MUSICNN_MODELS, default=None,
                   help="print musicnn's own tags instead of genres (default model: MSD_musicnn)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--timeline", action="store_true", help="add every segment's start, end, top label and probabilities")
    p.add_argument("--format", default="table", choices=["table", "json", "csv"])
    p.add_argument("--output", default=None, help="write here instead of standard output")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args()

    device = resolve_device(args.device)
    if args.musicnn_tags:
        runner, key = predict.Tagger(args.musicnn_tags, device), "tags"
    else:
        ckpt_path = Path(args.checkpoint) if args.checkpoint else (newest_run() or Path("runs")) / "best.pt"
        if not args.checkpoint and not ckpt_path.exists():
            raise UserError("no trained model under runs/: train one with `make demo` or `python main.py --model base2dcnn`, "
                            "pass --checkpoint FILE, or use --musicnn-tags")
        model, ckpt = load_model(ckpt_path)
        runner, key = predict.Classifier(model, ckpt, device), "probabilities"

    files, failed = [], 0
    for path in map(Path, args.paths):
        if not path.exists():
            print(f"error: {path}: no such file or directory", file=sys.stderr)
            failed += 1
        elif path.is_dir() and not audio.find_audio([path]):
            print(f"error: {path}: no audio files found ({', '.join(audio.AUDIO_EXTS)})", file=sys.stderr)
            failed += 1
        else:
            files += audio.find_audio([path])
    results = []
    for f in tqdm(files, desc="classify", unit="file", disable=len(files) < 3 or not sys.stderr.isatty()):
        try:
            results.append(predict.result(f, runner(f), runner.genres, args.top_k, args.timeline, key))
        except audio.AudioError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    text = {"json": lambda: json.dumps(results, indent=2),
            "csv": lambda: predict.csv_rows(results, runner.genres, key),
            "table": lambda: predict.table(results, key)}[args.format]()
    if args.output:
        write_text(args.output, text + "\n")
    elif results:
        print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)
