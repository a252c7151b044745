"""Pictures people look at instead of reading numbers: the confusion matrix and the training curves
of a run folder, an experiment's curves overlaid, and predict.py's genre timeline of one file.

Every picture is a PNG written atomically (io.atomic_path), drawn with matplotlib's Agg backend
(no display needed). Nothing here trains or reads caches, so predict.py may import it.
"""
import numpy as np

from .io import atomic_path

SILENCE = "silence"  # the timeline's label of a segment with no genre (predict: out["silent"])
LABEL_NAME = {"probabilities": "genre", "tags": "tag"}  # a distribution's key -> the name of one of its labels


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    """Write `fig` to `path` atomically and free it, as PNG unless the name ends in .svg or .pdf.
    Raises OSError when the folder cannot be written."""
    plt = pyplot()
    suffix = str(path).rsplit(".", 1)[-1].lower()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix if suffix in ("svg", "pdf") else "png", dpi=100)
    finally:
        plt.close(fig)


def save_confusion(matrix, genres, path, title=""):
    """Confusion matrix picture: rows are true genres, columns predictions, each cell its count."""
    import textwrap

    plt = pyplot()
    m = np.asarray(matrix)
    size = max(4.5, 1 + 0.6 * len(genres))  # 3 genres would leave the title 2.8 inches
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(genres)), genres, rotation=45, ha="right")
    ax.set_yticks(range(len(genres)), genres)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(textwrap.fill(title, int(size * 8)), fontsize=10)  # about 8 characters an inch at 10 pt
    for i in range(len(genres)):
        for j in range(len(genres)):
            ax.text(j, i, m[i, j], ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    fig.tight_layout()
    _save(fig, path)


def best_epoch(history):
    """The epoch whose best.pt a run keeps: highest val clip accuracy, lower val loss on a tie, the
    earlier epoch on a full tie (train.Trainer.end_epoch's rule). None for an empty history."""
    best, key = None, (-1.0, -float("inf"))
    for r in history:
        k = (r["val_clip_accuracy"], -r["val_loss"])
        if k > key:
            best, key = r["epoch"], k
    return best


def _column(history, name):
    return np.array([np.nan if r.get(name) is None else r[name] for r in history], dtype=float)


def save_curves(history, path, title=""):
    """One run's curves.png: loss (train, val), accuracy (train, val clip, val segment) and the
    learning rate against epoch, the best epoch marked by a dashed line in every panel.
    history: [{"epoch", "train_loss", "train_accuracy", "val_loss", "val_clip_accuracy",
    "val_segment_accuracy", "lr"}] as train.Trainer records it."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs, best = _column(history, "epoch"), best_epoch(history)
    fig, (loss, acc, lr) = plt.subplots(1, 3, figsize=(13, 3.8), gridspec_kw={"width_ratios": [3, 3, 2]})
    marker = "o" if len(history) < 30 else None  # few epochs: show each one
    loss.plot(epochs, _column(history, "train_loss"), marker=marker, ms=3, label="train")
    loss.plot(epochs, _column(history, "val_loss"), marker=marker, ms=3, label="val")
    acc.plot(epochs, _column(history, "train_accuracy"), marker=marker, ms=3, label="train (segments)")
    acc.plot(epochs, _column(history, "val_clip_accuracy"), marker=marker, ms=3, label="val clip")
    acc.plot(epochs, _column(history, "val_segment_accuracy"), ls=":", label="val segment")
    rates = _column(history, "lr")
    lr.plot(epochs, rates, color="tab:gray")
    lr.ticklabel_format(axis="y", useOffset=False)  # no "1e-3 + ..." offsets: the rate itself
    finite = set(rates[np.isfinite(rates)].tolist())
    if len(finite) == 1:  # a constant rate: its value, on an axis from 0, not a ±4% band around it
        value = finite.pop()
        lr.set_ylim(min(0, 1.5 * value), max(0, 1.5 * value))
        lr.set_yticks([0, value], ["0", f"{value:g}"])
    elif not finite:  # the classic heads: one scikit-learn fit, no learning rate
        lr.text(0.5, 0.5, "none (one scikit-learn fit)", ha="center", va="center", transform=lr.transAxes)
    row = next((r for r in history if r["epoch"] == best), None)
    for ax, name in ((loss, "loss (cross-entropy)"), (acc, "accuracy"), (lr, "learning rate")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        if row is not None:  # the legend of the accuracy panel names it
            ax.axvline(best, color="tab:red", ls="--", lw=1,
                       label=f"best epoch {best}: val clip {row['val_clip_accuracy']:.3f}" if ax is acc else None)
    acc.set_ylim(-0.02, 1.02)
    loss.legend(fontsize=8)
    acc.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def save_overlay(histories, path, title=""):
    """An experiment's curves.png: every run's val loss and val clip accuracy against epoch, one
    colour per run (train curves faint, dashed), each run's best epoch marked with a dot.
    histories: {run name: history as in save_curves}."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (loss, acc) = plt.subplots(1, 2, figsize=(13, 4.4))
    colors = plt.get_cmap("tab20" if len(histories) > 10 else "tab10")
    for i, (name, history) in enumerate(histories.items()):
        if not history:
            continue
        c, epochs = colors(i % colors.N), _column(history, "epoch")
        loss.plot(epochs, _column(history, "val_loss"), color=c, label=name)
        loss.plot(epochs, _column(history, "train_loss"), color=c, ls="--", alpha=0.35)
        acc.plot(epochs, _column(history, "val_clip_accuracy"), color=c, label=name)
        acc.plot(epochs, _column(history, "train_accuracy"), color=c, ls="--", alpha=0.35)
        best = best_epoch(history)
        if best is not None:
            row = next(r for r in history if r["epoch"] == best)
            acc.plot([best], [row["val_clip_accuracy"]], "o", color=c, ms=6, mec="black", mew=0.6)
    loss.set_title("loss: val (solid), train (dashed)", fontsize=10)
    acc.set_title("accuracy: val clip (solid, dot at the best epoch), train (dashed)", fontsize=10)
    acc.set_ylim(-0.02, 1.02)
    for ax in (loss, acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    acc.legend(fontsize=7, ncol=1 + len(histories) // 8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def _edges(bounds):
    """Column edges (s) of a timeline heat map from its (start, end) windows in time order: halfway
    between window centres, so non-overlapping segments get their own bounds and --hop windows
    share the time between them. (n,) windows -> (n + 1,) edges."""
    centers = np.array([(a + b) / 2 for a, b in bounds])
    mids = (centers[1:] + centers[:-1]) / 2
    return np.concatenate([[bounds[0][0]], mids, [bounds[-1][1]]])


MAX_ROWS = 20  # a timeline of musicnn's 50 tags shows the 20 that matter most (top of a segment, then mean)


def _runs(top):
    """(first, last) index of each run of equal values in `top`."""
    starts = [k for k in range(len(top)) if k == 0 or top[k] != top[k - 1]]
    return list(zip(starts, [k - 1 for k in starts[1:]] + [len(top) - 1]))


def save_timeline(result, path, key="probabilities"):
    """predict.py --plot: one file's probabilities over time as a heat map (a row per genre, a
    column per segment, darker = more probable), a white dot on each segment's top label, and the
    top label written above every stretch where it stays the same long enough to read (7% of the
    file). Silent segments (no genre) are a grey hatched band. With more than MAX_ROWS labels
    (musicnn's tags), only the rows that are some segment's top label, then the highest means.
    result: predict_output.result()'s dict with its "timeline". Raises OSError when `path` cannot
    be written; the format follows its suffix (png, svg, pdf)."""
    plt = pyplot()
    timeline = result["timeline"]
    labels = list(result[key])
    silent = np.array([bool(seg.get("silent")) for seg in timeline])
    probs = np.array([[np.nan] * len(labels) if s else [seg[key][g] for g in labels]
                      for seg, s in zip(timeline, silent)])  # (segments, labels)
    top = np.where(silent, -1, np.nan_to_num(probs, nan=-1).argmax(1))
    if len(labels) > MAX_ROWS:
        mean = np.array([result[key][g] for g in labels])
        keep = list(dict.fromkeys([*sorted(set(top[top >= 0]), key=lambda i: -mean[i]), *np.argsort(-mean)]))[:MAX_ROWS]
        keep = sorted(keep)
        remap = {old: new for new, old in enumerate(keep)}
        labels, probs = [labels[i] for i in keep], probs[:, keep]
        top = np.array([remap.get(t, -2) if t >= 0 else -1 for t in top])  # -2: a top row left out
    edges = _edges([(seg["start"], seg["end"]) for seg in timeline])
    fig, ax = plt.subplots(figsize=(min(18, 6 + 0.12 * len(timeline)), 1.8 + 0.3 * len(labels)))
    cmap = plt.get_cmap("magma_r").with_extremes(bad="0.85")  # silent columns: NaN, grey
    mesh = ax.pcolormesh(edges, np.arange(len(labels) + 1), np.ma.masked_invalid(probs.T), cmap=cmap, vmin=0, vmax=1)
    centers = (edges[1:] + edges[:-1]) / 2
    shown = top >= 0
    ax.plot(centers[shown], top[shown] + 0.5, "o", color="white", mec="black", mew=0.5, ms=4)
    for k in np.flatnonzero(silent):
        ax.axvspan(edges[k], edges[k + 1], facecolor="none", hatch="//", edgecolor="0.6", lw=0)
    span = edges[-1] - edges[0]
    for a, b in _runs(top):  # "metal from 8 s to 112 s": the label over its stretch
        if top[a] != -2 and edges[b + 1] - edges[a] >= 0.07 * span:
            ax.text((edges[a] + edges[b + 1]) / 2, len(labels) + 0.15, SILENCE if top[a] < 0 else labels[top[a]],
                    fontsize=8, ha="center", va="bottom", color="0.4" if top[a] < 0 else "black")
    ax.set_yticks(np.arange(len(labels)) + 0.5, labels, fontsize=9)
    ax.set_ylim(0, len(labels))
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("time (s)")
    first = result["top"][0]
    name = LABEL_NAME[key]
    fig.colorbar(mesh, ax=ax, pad=0.01, label="probability")
    ax.set_title(f"{result['path']}: {first[name]} {first['probability']:.2f} over the file", fontsize=10, pad=16)
    fig.tight_layout()
    _save(fig, path)
