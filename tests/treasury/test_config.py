"""Treasury configuration: the policy file, the environment, validation at load."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from butler_skill.errors import ConfigError
from butler_skill.treasury import config as cfg
from butler_skill.treasury.config import load_treasury_config, policy_view
from tests.treasury.conftest import CIRCLE_API_KEY, ENTITY_SECRET, MANAGEMENT_KEY

YAML = """
enabled: true
threshold: 12.10
amount: 0.3
caps:
  per_transaction: 100
  daily: 250.5
  monthly: 1000
min_wallet_reserve: 20
auto_approve_max: 0.1
providers:
  openrouter:
    destinations: ["0x1111111111111111111111111111111111111111"]
    opening_credit: 10.05
circle:
  blockchain: BASE-SEPOLIA
  token_address: "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
  fee_level: HIGH
"""


def test_no_policy_file_means_deny_everything(tmp_path: Path) -> None:
    c = load_treasury_config({}, tmp_path / "state.db")
    assert not c.policy_file_found and c.policy_path == tmp_path / "treasury-policy.yaml"
    p = c.policy
    assert (p.enabled, p.threshold, p.amount, p.auto_approve_max) == (False, 50, 200, 0)
    assert p.caps.per_transaction == p.caps.daily == p.caps.monthly == 0 and p.providers == {}
    assert c.network == "unknown" and c.circle_api_key is None


def test_yaml_numbers_are_exact_decimals(tmp_path: Path) -> None:
    (tmp_path / "treasury-policy.yaml").write_text(YAML, "utf-8")
    c = load_treasury_config({}, tmp_path / "state.db")
    p = c.policy
    assert p.threshold == Decimal("12.10") and p.amount == Decimal("0.3") and p.caps.daily == Decimal("250.5")
    assert p.auto_approve_max == Decimal("0.1") and p.providers["openrouter"].opening_credit == Decimal("10.05")
    assert c.token.blockchain == "BASE-SEPOLIA" and c.token.fee_level == "HIGH"
    view = policy_view(c).model_dump(mode="json")
    assert view["threshold"] == "12.1" and view["caps"]["daily"] == "250.5" and view["enabled"] is True


def test_json_policy_named_by_env(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.json"
    path.write_text('{"enabled": true, "threshold": 0.1, "caps": {"per_transaction": 1.1, "daily": 2.2, '
                    '"monthly": 3.3}}', "utf-8")
    c = load_treasury_config({"BUTLER_TREASURY_POLICY": str(path)}, None)
    assert c.policy.threshold == Decimal("0.1") and c.policy.caps.monthly == Decimal("3.3")
    with pytest.raises(ConfigError, match="does not exist"):
        load_treasury_config({"BUTLER_TREASURY_POLICY": str(tmp_path / "missing.yaml")}, None)


@pytest.mark.parametrize("caps", ["{per_transaction: 300, daily: 200, monthly: 1000}",
                                  "{per_transaction: 100, daily: 2000, monthly: 1000}"])
def test_caps_are_ordered_at_load(tmp_path: Path, caps: str) -> None:
    (tmp_path / "treasury-policy.yaml").write_text(f"caps: {caps}\n", "utf-8")
    with pytest.raises(ConfigError, match=r"caps.*per_transaction <= daily <= monthly"):
        load_treasury_config({}, tmp_path / "state.db")


@pytest.mark.parametrize("text", ["enabeld: true\n", "providers: {openrouter: {destination: x}}\n",
                                  "circle: {fee_level: TURBO}\n", "min_wallet_reserve: -1\n", "- a list\n"])
def test_unknown_or_bad_fields_are_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "treasury-policy.yaml").write_text(text, "utf-8")
    with pytest.raises(ConfigError):
        load_treasury_config({}, tmp_path / "state.db")


def test_parse_errors_do_not_quote_the_file(tmp_path: Path) -> None:
    (tmp_path / "treasury-policy.yaml").write_text(f"enabled: [\nnote: {MANAGEMENT_KEY}\n", "utf-8")
    with pytest.raises(ConfigError) as info:
        load_treasury_config({}, tmp_path / "state.db")
    assert MANAGEMENT_KEY not in str(info.value) and MANAGEMENT_KEY not in repr(info.value.details)


def test_original_env_vars_override_the_file(tmp_path: Path) -> None:
    (tmp_path / "treasury-policy.yaml").write_text(YAML, "utf-8")
    env = {"AUTO_BUY_ENABLED": "false", "AUTO_BUY_THRESHOLD": "75", "AUTO_BUY_AMOUNT": "150.5"}
    p = load_treasury_config(env, tmp_path / "state.db").policy
    assert (p.enabled, p.threshold, p.amount) == (False, Decimal("75"), Decimal("150.5"))
    assert load_treasury_config({"AUTO_BUY_ENABLED": "1"}, tmp_path / "x.db").policy.enabled
    for name, value in (("AUTO_BUY_ENABLED", "maybe"), ("AUTO_BUY_AMOUNT", "lots"), ("AUTO_BUY_THRESHOLD", "nan"),
                        ("AUTO_BUY_AMOUNT", "-5")):
        with pytest.raises(ConfigError):
            load_treasury_config({name: value}, tmp_path / "state.db")


def test_secrets_and_network(tmp_path: Path) -> None:
    env = {"CIRCLE_API_KEY": CIRCLE_API_KEY, "CIRCLE_ENTITY_SECRET": ENTITY_SECRET,
           "OPENROUTER_MANAGEMENT_KEY": MANAGEMENT_KEY, "CIRCLE_WALLET_ID": "w-1",
           "BUTLER_CIRCLE_BASE_URL": "http://127.0.0.1:9", "BUTLER_OPENROUTER_BASE_URL": "http://127.0.0.1:9/api/v1"}
    c = load_treasury_config(env, tmp_path / "state.db")
    assert c.network == "testnet" and c.circle_wallet_id == "w-1"
    assert c.circle_base_url == "http://127.0.0.1:9" and c.openrouter_base_url.endswith("/api/v1")
    text = repr(c) + str(c) + c.model_dump_json() + policy_view(c).model_dump_json()
    for secret in (CIRCLE_API_KEY, ENTITY_SECRET, MANAGEMENT_KEY):
        assert secret not in text
    live = load_treasury_config({"CIRCLE_API_KEY": "LIVE_API_KEY:" + "a" * 32 + ":" + "b" * 32}, None)
    assert live.network == "mainnet"
    with pytest.raises(ConfigError) as info:
        load_treasury_config({"CIRCLE_ENTITY_SECRET": "not-hex-" + ENTITY_SECRET[8:]}, None)
    assert ENTITY_SECRET[8:] not in info.value.message


def test_every_variable_read_is_declared() -> None:
    source = Path(cfg.__file__).read_text("utf-8")
    read = set(re.findall(r'env\.get\("([A-Z_]+)"\)', source)) | set(re.findall(r'secret\("([A-Z_]+)"\)', source))
    read |= {name for name, _ in re.findall(r'\("(AUTO_BUY_[A-Z]+)", "([a-z]+)"\)', source)}
    assert read <= set(cfg.ENV_VARS), read - set(cfg.ENV_VARS)
    from butler_skill.host.redaction import SECRET_ENV_VARS

    assert set(SECRET_ENV_VARS) <= set(cfg.ENV_VARS)  # every treasury secret is masked by the host too
