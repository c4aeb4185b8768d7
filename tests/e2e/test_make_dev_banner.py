"""Every example `make dev` prints works verbatim (the webhook example included: created with curl, its delivery
verified), and `taifa-admin` works with only dev.env loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from taifa_localstack import banner

from tests.e2e.conftest import delivered


def test_banner_examples_run_verbatim_and_deliver(env, new_tenant, tmp_path: Path) -> None:
    # A fresh tenant stands in for the demo one so the examples meet a domain with no credential yet;
    # the example text itself is exactly what is printed.
    tenant = new_tenant()
    settings = {**env, "TAIFA_API_KEY": tenant.api_key, "TAIFA_ACCOUNT_ID": tenant.account_id,
                "TAIFA_DOMAIN_ID": tenant.domain_id, "TAIFA_DOMAIN": tenant.domain}
    (tmp_path / ".taifa").mkdir()
    (tmp_path / ".taifa" / "dev.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    printed = banner.render(settings, ".taifa/dev.env")
    # The examples exactly as printed, titles included (a title's second line once came out without its `#`).
    script = "set -euo pipefail\n" + printed[printed.index("\n# ") :]
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "sent" in result.stdout
    assert delivered(env, "Hello from swaks")
    assert delivered(env, "Hello from smtplib")
    assert "webhook verified: msg_" in result.stdout  # the credential's creation, signed with the webhook's secret
    for _, snippet in banner.EXAMPLES:
        assert snippet in printed


def test_dev_env_has_every_contract_key(dev_stack) -> None:
    written = dict(line.split("=", 1) for line in dev_stack.env_file.read_text().splitlines())
    required = {"TAIFA_API_URL", "TAIFA_API_KEY", "TAIFA_ACCOUNT_ID", "TAIFA_DOMAIN_ID", "TAIFA_DOMAIN",
                "TAIFA_SMTP_HOST", "TAIFA_SMTP_PORT", "TAIFA_SMTPS_PORT", "TAIFA_CA_FILE", "TAIFA_MAILDIR",
                "TAIFA_JWT_SECRET", "TAIFA_DATABASE_URL", "TAIFA_WEBHOOK_RECEIVER_URL", "TAIFA_WEBHOOK_LOG"}
    assert required <= set(written)


def test_taifa_admin_works_with_only_dev_env_loaded(dev_stack, tmp_path: Path) -> None:
    admin = Path(sys.executable).parent / "taifa-admin"
    script = f"set -a; . {dev_stack.env_file}; set +a; {admin} apikey create --account \"$TAIFA_ACCOUNT_ID\""
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert '"api_key": "tm_' in result.stdout or '"api_key":"tm_' in result.stdout
