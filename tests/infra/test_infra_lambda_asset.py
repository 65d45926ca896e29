"""The Lambda code asset, staged without Docker."""

from __future__ import annotations

from pathlib import Path

from iotnotify_infra.lambda_asset import DONE_MARKER, LAMBDA_REQUIREMENTS, stage_lambda_code


def test_staged_code_holds_both_packages_and_the_extra_dependency() -> None:
    code = stage_lambda_code()
    assert (code / "iotnotify" / "contract.py").is_file()
    assert (code / "iotnotify_handlers" / "settings.py").is_file()
    assert (code / "ulid" / "__init__.py").is_file()  # python-ulid, for the ULIDs
    # The chat moderator's look-alike table, data file included.
    assert (code / "confusable_homoglyphs" / "confusables.json").is_file()
    assert not list(code.rglob("__pycache__"))
    # boto3 is in the runtime and Powertools comes from its layer.
    assert not (code / "boto3").exists()
    assert not (code / "aws_lambda_powertools").exists()
    assert LAMBDA_REQUIREMENTS == ("python-ulid>=3.0,<4", "confusable-homoglyphs>=3.3,<4")


def test_staging_is_cached_by_content(tmp_path: Path) -> None:
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("X = 1\n")
    cache = tmp_path / "cache"
    first = stage_lambda_code(cache_dir=cache, packages=[package], requirements=())
    assert stage_lambda_code(cache_dir=cache, packages=[package], requirements=()) == first
    (package / "__init__.py").write_text("X = 2\n")
    second = stage_lambda_code(cache_dir=cache, packages=[package], requirements=())
    assert second != first
    assert (second / "pkg" / "__init__.py").read_text() == "X = 2\n"
    assert (second / DONE_MARKER).exists()  # excluded from the asset by the stack


def test_marker_file_is_not_part_of_the_deployed_asset() -> None:
    from infra_helpers import synth

    dev = synth("dev")
    code = dev.function("token")["Code"]["S3Key"].removesuffix(".zip")
    staged = dev.outdir / f"asset.{code}"
    assert (staged / "iotnotify_handlers").is_dir()
    assert not (staged / DONE_MARKER).exists()
