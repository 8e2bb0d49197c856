"""cluster.yaml: valid for Ray's launcher, free of secrets, safe by default.

Offline and fast: Ray's own prepare_config + validate_config check the file
against the ray-schema.json shipped in the installed ray package, the same
two calls `ray up` makes before it talks to AWS. No Ray cluster is started.
"""

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"

# GPUs per instance, from the EC2 instance type pages; a wrong count makes
# Ray Train place more workers on a node than it has GPUs.
GPUS_PER_INSTANCE = {
    "g5.xlarge": 1, "g5.2xlarge": 1, "g5.4xlarge": 1, "g5.8xlarge": 1,
    "g5.16xlarge": 1, "g5.12xlarge": 4, "g5.24xlarge": 4, "g5.48xlarge": 8,
    "p4d.24xlarge": 8, "p4de.24xlarge": 8, "p5.48xlarge": 8,
}


@pytest.fixture(scope="module")
def text():
    return CLUSTER_YAML.read_text()


@pytest.fixture(scope="module")
def config(text):
    return yaml.safe_load(text)


def _gpu_types(config):
    head = config["head_node_type"]
    return {k: v for k, v in config["available_node_types"].items() if k != head}


def _all_keys(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _all_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _all_keys(item)


def test_valid_against_rays_cluster_schema(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    # prepare_config merges ray/autoscaler/aws/defaults.yaml as `ray up` does;
    # validate_config runs jsonschema against ray/autoscaler/ray-schema.json.
    validate_config(prepare_config(config))


def test_shape(config):
    assert config["cluster_name"] == "tinyreason"
    assert config["provider"]["type"] == "aws"
    assert re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", config["provider"]["region"])
    assert set(_gpu_types(config)) == {"gpu_a10g", "gpu_a100", "gpu_h100"}
    assert config["file_mounts"] == {"~/tinyreason": "."}
    assert "cd ~/tinyreason && pip install -e ." in config["setup_commands"]


def test_no_account_ids_keys_or_arns(text, config):
    assert not re.search(r"(?<!\d)\d{12}(?!\d)", text), "12-digit AWS account id"
    assert not re.search(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b", text), "AWS access key id"
    assert not re.search(r"arn:aws", text, re.IGNORECASE), "ARN"
    lowered = text.lower()
    for word in ("aws_access_key", "aws_secret", "aws_session_token"):
        assert word not in lowered, word
    keys = {key.lower() for key in _all_keys(config)}
    assert not any("secret" in key for key in keys), keys
    assert "aws_credentials" not in keys


def test_no_user_specific_auth_or_network_ids(config):
    assert config["auth"] == {"ssh_user": "ubuntu"}
    for name, node_type in config["available_node_types"].items():
        node_config = node_type["node_config"]
        for key in ("KeyName", "SubnetIds", "SubnetId", "SecurityGroupIds"):
            assert key not in node_config, f"{name}.node_config.{key}"
        # An instance profile may be named (docs/cluster.md), never given by ARN.
        profile = node_config.get("IamInstanceProfile", {"Name": "-"})
        assert set(profile) == {"Name"}, f"{name}.node_config.IamInstanceProfile"


def test_gpu_workers_scale_from_zero_and_declare_their_gpus(config):
    for name, node_type in _gpu_types(config).items():
        assert node_type["min_workers"] == 0, name
        assert node_type["max_workers"] >= 1, name
        gpus = node_type["resources"]["GPU"]
        assert isinstance(gpus, int) and gpus > 0, name
        instance = node_type["node_config"]["InstanceType"]
        if instance in GPUS_PER_INSTANCE:
            assert gpus == GPUS_PER_INSTANCE[instance], (name, instance)
        market = node_type["node_config"].get("InstanceMarketOptions")
        assert market in (None, {"MarketType": "spot"}), name


def test_head_has_no_gpus(config):
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert head["node_config"]["InstanceType"] not in GPUS_PER_INSTANCE


def test_dashboard_bound_to_localhost_with_token_auth(text, config):
    assert "0.0.0.0" not in text
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "RAY_AUTH_MODE=token" in head_start
    assert "RAY_AUTH_MODE=token" in " ".join(config["worker_start_ray_commands"])
    assert "~/.ray/auth_token" in config["cluster_synced_files"]


def test_ami_is_chosen_by_the_user(config):
    # latest_dlami resolves to Ray's pinned Ubuntu 18.04 DLAMI: too old for torch 2.x.
    amis = {t["node_config"]["ImageId"] for t in config["available_node_types"].values()}
    assert len(amis) == 1
    assert amis.pop().lower() not in ("", "latest_dlami")
