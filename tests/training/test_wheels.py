"""The endpoint's wheel set: the lock follows the pins, and a set that cannot install offline is refused
with the name of the package, before any archive exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wheel_sets import lock_for, locked_set, make_wheel
from training import wheels

X86_ONLY = "cp312-cp312-manylinux_2_28_x86_64"


def test_the_lock_was_generated_from_the_current_pins() -> None:
    """Otherwise a changed pin would ship without its dependencies: run `make lock`."""
    assert wheels.locked_digest() == wheels.pins_digest()
    locked = {pin.key: pin.version for pin in wheels.read_lock()}
    for requirement in wheels.requirement_pins():
        name, version = requirement.split("==")
        assert locked[wheels.canonical(name)] == version, requirement


def test_every_locked_wheel_is_pinned_by_hash_and_none_is_the_images_own() -> None:
    pins = wheels.read_lock()
    assert pins
    for pin in pins:
        assert pin.hashes, pin.name
        assert all(len(digest) == 64 for digest in pin.hashes), pin.name
    assert not {pin.key for pin in pins} & wheels.IMAGE_PACKAGES


def test_shipped_requirements_install_only_from_the_wheels_beside_them() -> None:
    text = wheels.offline_requirements(["transformers==5.24.0"])
    assert text.splitlines() == ["--no-index", "--find-links wheels", "transformers==5.24.0"]


@pytest.fixture
def pins(tmp_path: Path) -> Path:
    """A handler that needs `alpha`, which needs `beta`."""
    path = tmp_path / "requirements.txt"
    path.write_text("# the handler's pins\nalpha==1.0\n")
    return path


def test_a_complete_set_passes_the_offline_check(tmp_path: Path, pins: Path) -> None:
    made = [make_wheel(tmp_path / "w", "alpha", "1.0", requires=["beta>=2"]), make_wheel(tmp_path / "w", "beta", "2.1")]
    lock = lock_for(tmp_path / "requirements.lock", made)
    chosen = wheels.locked_wheels(tmp_path / "w", lock)
    assert sorted(chosen) == sorted(made)
    wheels.check(chosen, wheels.ENDPOINT, pins)


def test_a_missing_dependency_is_named(tmp_path: Path, pins: Path) -> None:
    alpha = make_wheel(tmp_path / "w", "alpha", "1.0", requires=["beta>=2"])
    with pytest.raises(wheels.WheelError, match=r"does not install offline for endpoint: no wheel for beta>=2"):
        wheels.check([alpha], wheels.ENDPOINT, pins)


def test_a_wheel_for_another_platform_is_named(tmp_path: Path, pins: Path) -> None:
    """A lock resolved for x86 does not install on the Graviton image."""
    alpha = make_wheel(tmp_path / "w", "alpha", "1.0", tag=X86_ONLY)
    with pytest.raises(wheels.WheelError, match=r"for endpoint: no wheel for alpha==1.0"):
        wheels.check([alpha], wheels.ENDPOINT, pins)


def test_a_wheel_that_differs_from_the_lock_is_refused(tmp_path: Path) -> None:
    alpha = make_wheel(tmp_path / "w", "alpha", "1.0")
    lock = lock_for(tmp_path / "requirements.lock", [alpha])
    make_wheel(tmp_path / "w", "alpha", "1.0", requires=["evil"])  # same name, other bytes
    with pytest.raises(wheels.WheelError, match=r"has no wheel for alpha==1.0 matching requirements.lock"):
        wheels.locked_wheels(tmp_path / "w", lock)


def test_the_check_ignores_this_machines_pip_configuration(
    tmp_path: Path, pins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A find-links of the developer's would otherwise fill what the archive lacks."""
    make_wheel(tmp_path / "elsewhere", "beta", "2.1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "elsewhere"))
    alpha = make_wheel(tmp_path / "w", "alpha", "1.0", requires=["beta>=2"])
    with pytest.raises(wheels.WheelError, match="no wheel for beta>=2"):
        wheels.check([alpha], wheels.ENDPOINT, pins)


@pytest.mark.slow
def test_the_locked_set_installs_offline_on_the_inference_image() -> None:
    """The real set, for aarch64 CPython 3.12: binary wheels of both manylinux families."""
    names = {path.name for path in locked_set(wheels.ENDPOINT)}
    assert len(names) == len(wheels.read_lock())
    assert any(name.startswith("tokenizers-") and "manylinux2014_aarch64" in name for name in names)
    assert any(name.startswith("hf_xet-") and name.endswith("manylinux_2_28_aarch64.whl") for name in names)
    assert not any("x86_64" in name for name in names)
