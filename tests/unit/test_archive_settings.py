"""WA_S3_* and WA_ARCHIVE_* derived once into the archive's tagged config (cluster/wiring.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from adapters.archive_local import LocalArchive
from adapters.archive_s3 import S3Archive
from cluster.backends import LocalArchiveConfig, S3ArchiveConfig, build_archive
from cluster.settings import Settings, SettingsError
from cluster.wiring import Wiring


def test_no_bucket_archives_into_the_data_folder(tmp_path: Path) -> None:
    """The embedded default: a folder under WA_DATA_DIR."""
    wiring = Wiring.from_settings(Settings.model_validate({"data_dir": tmp_path}))
    assert wiring.archive == LocalArchiveConfig(root=tmp_path.resolve())
    assert isinstance(build_archive(wiring.archive), LocalArchive)
    assert wiring.describe()["archive"] == f"folder:{tmp_path.resolve() / 'archive'}"


async def test_a_bucket_selects_s3_and_its_secret_is_redacted() -> None:
    """WA_S3_BUCKET set: the S3 adapter with the named endpoint, region and keys; the
    secret key is among the values the logs scrub."""
    settings = Settings.model_validate(
        {
            "s3_bucket": "wa-archive",
            "s3_endpoint_url": "http://127.0.0.1:9000",
            "s3_region": "eu-west-1",
            "s3_access_key_id": "key-id",
            "s3_secret_access_key": "the-secret-key",
            "archive_retention_s": 3600,
        }
    )
    wiring = Wiring.from_settings(settings)
    assert wiring.archive == S3ArchiveConfig(
        bucket="wa-archive",
        endpoint_url="http://127.0.0.1:9000",
        region="eu-west-1",
        access_key_id="key-id",
        secret_access_key=SecretStr("the-secret-key"),
    )
    assert wiring.archiver.retention_s == 3600
    assert "the-secret-key" in wiring.secret_values()
    assert "the-secret-key" not in str(wiring.describe())
    archive = build_archive(wiring.archive)
    assert isinstance(archive, S3Archive)
    await archive.close()


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"s3_bucket": "b", "s3_access_key_id": "k"}, "WA_S3_SECRET_ACCESS_KEY"),
        ({"s3_bucket": "b", "s3_secret_access_key": "s"}, "WA_S3_ACCESS_KEY_ID"),
        ({"archive_retention_s": 0}, "WA_ARCHIVE_RETENTION_S"),
        ({"archive_stall_after_s": 0}, "WA_ARCHIVE_STALL_AFTER_S"),
        ({"archive_batch": 0}, "WA_ARCHIVE_BATCH"),
        ({"archive_poll_ms": 0}, "WA_ARCHIVE_POLL_MS"),
    ],
)
def test_archive_settings_that_cannot_work_are_refused(
    fields: dict[str, object], names: str
) -> None:
    """Fail closed at start-up, naming the variable."""
    with pytest.raises(SettingsError, match=names):
        Settings.model_validate(fields).check()
