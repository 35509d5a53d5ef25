"""Where evaluation and calibration text lives, and reading it with clear errors.

The data is kept beside the project, not downloaded: ``<repository>/../shared/data/``
(see its README for sources and licences):

- ``wikitext-2-raw/wiki.test.raw``: WikiText-2 raw, test split (perplexity);
- ``mmlu/mmlu.jsonl``: MMLU test questions (accuracy);
- ``calibration/``: text for AWQ calibration, which never overlaps the evaluation text.

Every function that reads one of these also takes any other file.
"""

from __future__ import annotations

from pathlib import Path

from aielower.errors import AielowerError

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
WIKITEXT_TEST = DATA_DIR / "wikitext-2-raw" / "wiki.test.raw"
MMLU = DATA_DIR / "mmlu" / "mmlu.jsonl"
CALIBRATION_DIR = DATA_DIR / "calibration"


class DataError(AielowerError):
    """A data file is missing, unreadable or unusable."""


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``path``; ``what`` names its role in the error message."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{what} file {path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{what} file {path} is a directory; give a text file") from None
    except OSError as e:
        raise DataError(f"cannot read {what} file {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{what} file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def default_calibration_file() -> Path:
    """The calibration text: the first ``*.txt`` of ``../shared/data/calibration/`` by name."""
    files = sorted(CALIBRATION_DIR.glob("*.txt")) if CALIBRATION_DIR.is_dir() else []
    if not files:
        raise DataError(
            f"no calibration text in {CALIBRATION_DIR}: give a text file (calib=FILE in the pipeline, "
            "QuantConfig(calib=...), or --calib FILE)"
        )
    return files[0]


def check_disjoint(calibration: str | Path, evaluation: str | Path, min_line: int = 40) -> None:
    """Raise DataError if the calibration and evaluation texts are one file or share a line.

    Lines of at least ``min_line`` characters (after stripping) are compared, which catches a
    calibration file cut from the evaluation text without flagging headings or blank lines.
    """
    calibration, evaluation = Path(calibration), Path(evaluation)
    if calibration.exists() and evaluation.exists() and calibration.resolve() == evaluation.resolve():
        raise DataError(f"calibration and evaluation text are the same file ({evaluation}); they must not overlap")

    def lines(path, what):
        return {ln.strip() for ln in read_text(path, what).splitlines() if len(ln.strip()) >= min_line}

    shared = lines(calibration, "calibration") & lines(evaluation, "evaluation")
    if shared:
        example = next(iter(shared))
        raise DataError(
            f"calibration text {calibration} and evaluation text {evaluation} share {len(shared)} line(s), "
            f"e.g. {example[:60]!r}...; calibrate on text that does not overlap the evaluation"
        )
