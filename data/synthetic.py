"""A synthetic temporal video-text dataset whose captions depend on the ORDER of events.

Each clip shows coloured shapes (circle, square, triangle) on a dark background;
2-3 events happen one after another (a shape moves left/right/up/down, appears,
disappears, turns another colour, grows or shrinks) and the caption is generated
from the same scene description, e.g. "a red circle moves left, then a blue square
appears".

Order matters by construction: with ``reversed_pairs=True`` (default) items
``2k`` and ``2k+1`` are the same scene played forwards and backwards.  The two
clips contain exactly the same set of frames (one is the other reversed), so a
model that averages or pools frames without order sees identical inputs, while
their captions differ ("a red circle moves left, then a blue square appears" vs
"a blue square disappears, then a red circle moves right").

Everything is a deterministic function of ``(seed, index)``.

In memory::

    ds = SyntheticTemporalDataset(SyntheticConfig(num_videos=64, seed=0))
    item = ds.item(3)            # SyntheticItem: frames uint8 (T, H, W, 3), caption, scene
    sample = ds[3]               # VideoTextSample: video float32 (3, T, H, W), caption

On disk::

    python -m data.synthetic --out DIR --num N --seed S [--msrvtt-layout]

writes ``DIR/videos/{id}.mp4`` and ``DIR/captions.jsonl``; with ``--msrvtt-layout``
the videos go to ``DIR/videos/all/`` and ``MSRVTT_data.json``,
``MSRVTT_JSFUSION_test.csv``, ``MSRVTT_train.9k.csv`` and ``MSRVTT_train.7k.csv``
are written too (whole forward/backward pairs go to the test split).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from data.dataset import VideoTextSample
from data.records import VideoTextRecord
from data.transforms import TransformConfig, frames_to_tensor

logger = logging.getLogger(__name__)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 210, 40),
    "purple": (160, 60, 210),
    "white": (235, 235, 235),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUND: tuple[int, int, int] = (25, 25, 30)

_NORMAL_SIZE = 0.14  # radius as a fraction of min(H, W)
_BIG_SIZE = 0.22
_SMALL_SIZE = 0.08
_MOVE = 0.3  # move distance as a fraction of the frame
_MARGIN = 0.2  # keep centres in [_MARGIN, 1 - _MARGIN]


@dataclass(frozen=True)
class SyntheticConfig:
    """Dataset size, clip geometry and event counts.

    Attributes:
        num_videos: number of items.
        seed: everything is a function of (seed, index).
        num_frames: frames per clip (T).
        height, width: frame size in pixels (even numbers, for H.264).
        fps: frame rate of written files.
        min_events, max_events: events per clip (each >= 2 so there is an order).
        reversed_pairs: item 2k+1 is item 2k played backwards (see module doc).
    """

    num_videos: int = 100
    seed: int = 0
    num_frames: int = 16
    height: int = 64
    width: int = 64
    fps: float = 8.0
    min_events: int = 2
    max_events: int = 3
    reversed_pairs: bool = True

    def __post_init__(self) -> None:
        if self.num_videos < 1:
            raise ValueError("num_videos must be >= 1")
        if not 2 <= self.min_events <= self.max_events <= 3:
            raise ValueError("need 2 <= min_events <= max_events <= 3")
        if self.num_frames < 2 * self.max_events:
            raise ValueError(f"num_frames must be >= {2 * self.max_events} for {self.max_events} events")
        if self.height % 2 or self.width % 2 or min(self.height, self.width) < 16:
            raise ValueError("height and width must be even and >= 16")


@dataclass(frozen=True)
class ObjectState:
    """Where and how an object looks: centre (fractions of width/height), radius
    (fraction of min(H, W); 0 = not visible) and colour name."""

    x: float
    y: float
    size: float
    colour: str


@dataclass(frozen=True)
class SceneEvent:
    """Object ``object_id`` changes from ``before`` to ``after`` during its time slot."""

    object_id: int
    before: ObjectState
    after: ObjectState

    def reversed(self) -> "SceneEvent":
        return SceneEvent(self.object_id, self.after, self.before)

    def verb(self) -> str:
        """What happens, derived from the two states ("moves left", "appears", "turns blue", ...)."""
        b, a = self.before, self.after
        if b.size == 0 and a.size > 0:
            return "appears"
        if b.size > 0 and a.size == 0:
            return "disappears"
        if a.colour != b.colour:
            return f"turns {a.colour}"
        if a.size > b.size:
            return "grows"
        if a.size < b.size:
            return "shrinks"
        dx, dy = a.x - b.x, a.y - b.y
        if abs(dx) >= abs(dy):
            return "moves right" if dx > 0 else "moves left"
        return "moves down" if dy > 0 else "moves up"


@dataclass(frozen=True)
class SceneSpec:
    """Shapes with their initial states, and the events in the order they happen."""

    shapes: tuple[str, ...]
    initial: tuple[ObjectState, ...]
    events: tuple[SceneEvent, ...]

    def final(self) -> tuple[ObjectState, ...]:
        states = list(self.initial)
        for e in self.events:
            states[e.object_id] = e.after
        return tuple(states)

    def reversed(self) -> "SceneSpec":
        """The same scene played backwards: renders to the reversed frames."""
        return SceneSpec(self.shapes, self.final(), tuple(e.reversed() for e in reversed(self.events)))

    def event_phrases(self) -> list[str]:
        """One phrase per event, e.g. "a red circle moves left"."""
        phrases = []
        for e in self.events:
            colour = e.after.colour if e.before.size == 0 else e.before.colour
            phrases.append(f"a {colour} {self.shapes[e.object_id]} {e.verb()}")
        return phrases

    def captions(self) -> list[str]:
        """Paraphrases of the event sequence (all keep the order); the first is the main caption."""
        p = self.event_phrases()
        if len(p) == 2:
            return [f"{p[0]}, then {p[1]}", f"first {p[0]}, and then {p[1]}", f"{p[0]} before {p[1]}"]
        return [
            f"{p[0]}, then {p[1]}, then {p[2]}",
            f"first {p[0]}, then {p[1]}, and finally {p[2]}",
            f"{p[0]}; after that {p[1]}; at the end {p[2]}",
        ]

    def to_dict(self) -> dict:
        return {
            "shapes": list(self.shapes),
            "events": [
                {"object": e.object_id, "verb": e.verb(), "before": vars(e.before), "after": vars(e.after)}
                for e in self.events
            ],
        }


def _mix(a: float, b: float, num: int, den: int) -> float:
    """``a + (num/den) * (b - a)``, written so that ``_mix(a, b, n, d) == _mix(b, a, d - n, d)`` exactly."""
    return (a * (den - num) + b * num) / den


def _interp(a: ObjectState, b: ObjectState, num: int, den: int) -> ObjectState:
    """State a fraction ``num/den`` of the way from ``a`` to ``b`` (colour switches at the midpoint)."""
    if num <= 0:
        return a
    if num >= den:
        return b
    return ObjectState(
        _mix(a.x, b.x, num, den), _mix(a.y, b.y, num, den), _mix(a.size, b.size, num, den),
        a.colour if 2 * num < den else b.colour,
    )


def _rgb_at(a: ObjectState, b: ObjectState, num: int, den: int) -> np.ndarray:
    ca, cb = COLOURS[a.colour], COLOURS[b.colour]
    num = min(max(num, 0), den)
    return np.array([_mix(x, y, num, den) for x, y in zip(ca, cb)])


def _draw(canvas: np.ndarray, shape: str, state: ObjectState, rgb: np.ndarray) -> None:
    h, w, _ = canvas.shape
    r = state.size * min(h, w)
    if r <= 0.25:
        return
    cy, cx = state.y * h, state.x * w
    yy, xx = np.mgrid[0:h, 0:w]
    dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
    if shape == "circle":
        mask = dx * dx + dy * dy <= r * r
    elif shape == "square":
        mask = (np.abs(dx) <= r) & (np.abs(dy) <= r)
    else:  # triangle, apex up
        mask = (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) * 0.5)
    canvas[mask] = rgb


def render_scene(scene: SceneSpec, num_frames: int, height: int, width: int) -> np.ndarray:
    """Frames of ``scene`` as ``uint8 (num_frames, height, width, 3)`` RGB.

    Frame ``t`` is rendered at normalised time ``(t + 0.5) / num_frames``; event ``k``
    of ``n`` runs over ``[k/n, (k+1)/n]``.  Hence ``render_scene(scene.reversed(), ...)``
    equals ``render_scene(scene, ...)[::-1]`` exactly.
    """
    n = len(scene.events)
    den = 2 * num_frames
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        states = list(scene.initial)
        colours = [np.array(COLOURS[s.colour], float) for s in scene.initial]
        for k, e in enumerate(scene.events):
            # Progress of event k at time (t + 0.5) / T, as the exact fraction num / den.
            num = min(max((2 * t + 1) * n - 2 * k * num_frames, 0), den)
            if num > 0:
                states[e.object_id] = _interp(e.before, e.after, num, den)
                colours[e.object_id] = _rgb_at(e.before, e.after, num, den)
        canvas = np.empty((height, width, 3), dtype=np.uint8)
        canvas[:] = BACKGROUND
        for i, shape in enumerate(scene.shapes):
            _draw(canvas, shape, states[i], np.floor(colours[i] + 0.5).astype(np.uint8))
        frames[t] = canvas
    return frames


def _free_slots(states: Sequence[ObjectState], rng: np.random.Generator) -> tuple[float, float]:
    """A centre away from visible objects (falls back to a random one)."""
    grid = [(x, y) for x in (0.25, 0.5, 0.75) for y in (0.25, 0.5, 0.75)]
    rng.shuffle(grid)
    for x, y in grid:
        if all(s.size == 0 or abs(s.x - x) + abs(s.y - y) > 0.3 for s in states):
            return x, y
    return grid[0]


def generate_scene(rng: np.random.Generator, num_events: int) -> SceneSpec:
    """A random scene with ``num_events`` sequential events on 1-3 distinct (shape, colour) objects."""
    shapes: list[str] = []
    states: list[ObjectState] = []
    initial: list[ObjectState] = []
    shape_pool = list(SHAPES)
    rng.shuffle(shape_pool)
    used_colours: set[str] = set()

    def new_object(visible: bool) -> int:
        shape = shape_pool.pop()
        colour = str(rng.choice(sorted(set(COLOURS) - used_colours)))
        used_colours.add(colour)
        x, y = _free_slots(states, rng)
        state = ObjectState(x, y, _NORMAL_SIZE if visible else 0.0, colour)
        shapes.append(shape)
        states.append(state)
        initial.append(state)
        return len(states) - 1

    for _ in range(int(rng.integers(1, 3))):
        new_object(visible=True)

    events: list[SceneEvent] = []
    for _ in range(num_events):
        options: list[tuple[str, int]] = []
        for i, s in enumerate(states):
            if s.size == 0:
                options.append(("appear", i))
                continue
            options += [("move", i), ("colour", i), ("size", i)]
            if sum(v.size > 0 for v in states) > 1:
                options.append(("disappear", i))
        if shape_pool:
            options.append(("appear_new", -1))
        # Do not let one object take two events in a row: sequences read better.
        if events and len(options) > 1:
            filtered = [o for o in options if o[1] != events[-1].object_id]
            options = filtered or options
        kind, obj = options[int(rng.integers(len(options)))]
        if kind == "appear_new":
            obj = new_object(visible=False)
            kind = "appear"
        before = states[obj]
        if kind == "appear":
            after = replace(before, size=_NORMAL_SIZE)
        elif kind == "disappear":
            after = replace(before, size=0.0)
        elif kind == "colour":
            free = sorted(set(COLOURS) - used_colours)
            if not free:  # all colours taken: move instead
                kind = "move"
            else:
                colour = str(rng.choice(free))
                used_colours.add(colour)
                after = replace(before, colour=colour)
        if kind == "size":
            ladder = (_SMALL_SIZE, _NORMAL_SIZE, _BIG_SIZE)
            step = ladder.index(before.size)
            sizes = [ladder[j] for j in (step - 1, step + 1) if 0 <= j < len(ladder)]
            after = replace(before, size=sizes[int(rng.integers(len(sizes)))])
        if kind == "move":
            moves = []
            if before.x - _MOVE >= _MARGIN - 1e-9:
                moves.append((-_MOVE, 0.0))
            if before.x + _MOVE <= 1 - _MARGIN + 1e-9:
                moves.append((_MOVE, 0.0))
            if before.y - _MOVE >= _MARGIN - 1e-9:
                moves.append((0.0, -_MOVE))
            if before.y + _MOVE <= 1 - _MARGIN + 1e-9:
                moves.append((0.0, _MOVE))
            dx, dy = moves[int(rng.integers(len(moves)))]
            after = replace(before, x=round(before.x + dx, 6), y=round(before.y + dy, 6))
        events.append(SceneEvent(obj, before, after))
        states[obj] = after
    return SceneSpec(tuple(shapes), tuple(initial), tuple(events))


@dataclass
class SyntheticItem:
    """One synthetic clip with its description.

    Attributes:
        video_id: "video{index}".
        frames: ``uint8 (T, H, W, 3)`` RGB.
        captions: paraphrases, main caption first.
        scene: the scene description the frames and captions come from.
        pair_id: index of the forward/backward pair.
        is_reversed: whether this is the backward member of its pair.
    """

    video_id: str
    frames: np.ndarray
    captions: list[str]
    scene: SceneSpec
    pair_id: int
    is_reversed: bool

    @property
    def caption(self) -> str:
        return self.captions[0]


def make_scene(config: SyntheticConfig, index: int) -> tuple[SceneSpec, int, bool]:
    """``(scene, pair_id, is_reversed)`` of item ``index`` (deterministic in ``config.seed``)."""
    if not 0 <= index < config.num_videos:
        raise IndexError(f"index {index} out of range for {config.num_videos} synthetic videos")
    pair_id, is_reversed = (index // 2, index % 2 == 1) if config.reversed_pairs else (index, False)
    rng = np.random.default_rng([config.seed, pair_id])
    num_events = int(rng.integers(config.min_events, config.max_events + 1))
    scene = generate_scene(rng, num_events)
    return (scene.reversed() if is_reversed else scene), pair_id, is_reversed


def make_item(config: SyntheticConfig, index: int) -> SyntheticItem:
    """Render item ``index``."""
    scene, pair_id, is_reversed = make_scene(config, index)
    frames = render_scene(scene, config.num_frames, config.height, config.width)
    return SyntheticItem(f"video{index}", frames, scene.captions(), scene, pair_id, is_reversed)


class SyntheticTemporalDataset(Dataset):
    """The synthetic dataset in memory (nothing written to disk).

    ``dataset[i]`` is a :class:`data.dataset.VideoTextSample` with ``video`` of shape
    ``(3, T, H, W)`` float32 (``transform`` applied; default: no resize, centre crop to
    the short side, ImageNet normalisation) and the main caption.
    """

    def __init__(self, config: SyntheticConfig | None = None, transform: TransformConfig | None = None) -> None:
        self.config = config or SyntheticConfig()
        self.transform = transform or TransformConfig(size=min(self.config.height, self.config.width))

    def __len__(self) -> int:
        return self.config.num_videos

    def item(self, index: int) -> SyntheticItem:
        return make_item(self.config, index)

    @property
    def captions(self) -> list[str]:
        """Main caption of every item (no rendering)."""
        return [make_scene(self.config, i)[0].captions()[0] for i in range(len(self))]

    def __getitem__(self, index: int) -> VideoTextSample:
        item = self.item(index)
        video = frames_to_tensor(item.frames, self.transform)
        return VideoTextSample(video=video, caption=item.caption, video_id=item.video_id, index=index, caption_index=0)


def encode_mp4(path: str | os.PathLike[str], frames: np.ndarray, fps: float, crf: int = 12) -> None:
    """Write ``uint8 (T, H, W, 3)`` RGB frames as H.264 (yuv420p) MP4."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(os.fspath(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _test_pairs(config: SyntheticConfig, test_fraction: float) -> set[int]:
    num_pairs = math.ceil(config.num_videos / 2) if config.reversed_pairs else config.num_videos
    n_test = min(num_pairs, max(1, int(round(num_pairs * test_fraction)))) if test_fraction > 0 else 0
    return set(range(num_pairs - n_test, num_pairs))


def write_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    config: SyntheticConfig | None = None,
    msrvtt_layout: bool = False,
    test_fraction: float = 0.5,
    show_progress: bool = False,
) -> list[VideoTextRecord]:
    """Render, encode and write the dataset; return one record per video (all paraphrases as captions).

    Files: ``videos/{id}.mp4`` (``videos/all/{id}.mp4`` with ``msrvtt_layout``) and
    ``captions.jsonl`` (fields ``video`` (relative path), ``video_id``, ``caption``,
    ``captions``, ``pair_id``, ``reversed``, ``split``, ``scene``).  With
    ``msrvtt_layout`` also the MSR-VTT files (see module doc); the last
    ``test_fraction`` of the pairs form the test split.
    """
    from tqdm import tqdm

    config = config or SyntheticConfig()
    root = Path(out_dir)
    video_dir = root / "videos" / "all" if msrvtt_layout else root / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    test_pairs = _test_pairs(config, test_fraction) if msrvtt_layout else set()
    records: list[VideoTextRecord] = []
    rows = []
    for index in tqdm(range(config.num_videos), desc="synthetic videos", unit="video", disable=not show_progress):
        item = make_item(config, index)
        path = video_dir / f"{item.video_id}.mp4"
        encode_mp4(path, item.frames, config.fps)
        split = "test" if item.pair_id in test_pairs else "train"
        rows.append(
            {
                "video": path.relative_to(root).as_posix(),
                "video_id": item.video_id,
                "caption": item.caption,
                "captions": item.captions,
                "pair_id": item.pair_id,
                "reversed": item.is_reversed,
                "split": split,
                "scene": item.scene.to_dict(),
            }
        )
        records.append(
            VideoTextRecord(str(path), tuple(item.captions), item.video_id, meta={"pair_id": item.pair_id, "split": split})
        )
    with (root / "captions.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    if msrvtt_layout:
        _write_msrvtt_files(root, rows, config)
    logger.info("wrote %d synthetic videos to %s", len(rows), root)
    return records


def _write_msrvtt_files(root: Path, rows: list[dict], config: SyntheticConfig) -> None:
    duration = config.num_frames / config.fps
    data = {
        "info": {"description": f"synthetic temporal dataset, seed {config.seed}"},
        "videos": [
            {
                "video_id": r["video_id"],
                "id": i,
                "category": 0,
                "url": "",
                "start time": 0.0,
                "end time": duration,
                "split": r["split"],
            }
            for i, r in enumerate(rows)
        ],
        "sentences": [],
    }
    sen_id = 0
    for r in rows:
        for caption in r["captions"]:
            data["sentences"].append({"video_id": r["video_id"], "caption": caption, "sen_id": sen_id})
            sen_id += 1
    with (root / "MSRVTT_data.json").open("w", encoding="utf-8") as fh:
        json.dump(data, fh)
    test = [r for r in rows if r["split"] == "test"]
    train = [r for r in rows if r["split"] == "train"]
    with (root / "MSRVTT_JSFUSION_test.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "vid_key", "video_id", "sentence"])
        for k, r in enumerate(test):
            writer.writerow([f"ret{k}", f"msr{r['video_id'][len('video'):]}", r["video_id"], r["caption"]])
    for name, subset in (("MSRVTT_train.9k.csv", train), ("MSRVTT_train.7k.csv", train[: max(1, len(train) * 7 // 9)] if train else [])):
        with (root / name).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["video_id"])
            for r in subset:
                writer.writerow([r["video_id"]])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.synthetic",
        description="Write the synthetic temporal video-text dataset (mp4 + captions.jsonl).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--num", type=int, default=100, help="number of videos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--size", type=int, default=64, help="frame height and width (even)")
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--min-events", type=int, default=2)
    parser.add_argument("--max-events", type=int, default=3)
    parser.add_argument("--no-reversed-pairs", action="store_true", help="independent scenes instead of forward/backward pairs")
    parser.add_argument("--msrvtt-layout", action="store_true", help="also write the MSR-VTT file layout")
    parser.add_argument("--test-fraction", type=float, default=0.5, help="fraction of pairs in the test split (MSR-VTT layout)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = SyntheticConfig(
        num_videos=args.num,
        seed=args.seed,
        num_frames=args.frames,
        height=args.size,
        width=args.size,
        fps=args.fps,
        min_events=args.min_events,
        max_events=args.max_events,
        reversed_pairs=not args.no_reversed_pairs,
    )
    records = write_synthetic_dataset(args.out, config, args.msrvtt_layout, args.test_fraction, show_progress=True)
    print(json.dumps({"out": str(args.out), "videos": len(records), "captions": str(args.out / "captions.jsonl")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "COLOURS",
    "SHAPES",
    "ObjectState",
    "SceneEvent",
    "SceneSpec",
    "SyntheticConfig",
    "SyntheticItem",
    "SyntheticTemporalDataset",
    "encode_mp4",
    "generate_scene",
    "make_item",
    "make_scene",
    "render_scene",
    "write_synthetic_dataset",
    "main",
]
