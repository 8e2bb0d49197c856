"""Typed experiment configs: the whole curriculum is validated before Ray starts.

Every error names the field (as a dotted path), the value, and what is allowed,
so a typo in stage 3 fails in a second instead of after two hours of stage 1.
Trainer settings keep TRL's own argument names; unknown names are rejected
against TRL's config dataclasses rather than silently dropped.

    experiment.py   the sections of an experiment YAML, stage rules, TRL key checks
    loading.py      YAML, --set overrides, checks of files, dirs and storage
    sweeps.py       a Ray Tune sweep over one stage
"""

from tinyreason.config.experiment import (
    MODEL_PRESETS, PLATFORM_OWNED, SCHEMA_OF_KIND, SYNTHETIC_SCHEMA, BenchmarkConfig, BlendConfig, CheckpointPolicy,
    ConfigError, DataConfig, DecontamConfig, DeepSpeedConfig, EvalConfig, ExperimentConfig, ModelConfig,
    ObjectiveConfig, ScalingConfig, SourceConfig, StageConfig, StageKind, StorageConfig, Strict, TaskSpec,
    TokenizerConfig, TrackingConfig, TrainerSettings, WandbConfig, check_trainer_keys)
from tinyreason.config.loading import (
    CONFIG_DIR, REPO_ROOT, TOKENIZER_FILES, _read_yaml, _resolve_path, apply_override, check_storage, dump_config,
    format_errors, load_blend, load_config, parse_value, validate_config)
from tinyreason.config.sweeps import ParamSpace, SchedulerConfig, SweepConfig, TrialResources, load_sweep

__all__ = [  # the names the rest of the platform imports from here
    "MODEL_PRESETS", "PLATFORM_OWNED", "SCHEMA_OF_KIND", "SYNTHETIC_SCHEMA", "BenchmarkConfig", "BlendConfig",
    "CheckpointPolicy", "ConfigError", "DataConfig", "DecontamConfig", "DeepSpeedConfig", "EvalConfig",
    "ExperimentConfig", "ModelConfig", "ObjectiveConfig", "ScalingConfig", "SourceConfig", "StageConfig",
    "StageKind", "StorageConfig", "Strict", "TaskSpec", "TokenizerConfig", "TrackingConfig", "TrainerSettings",
    "WandbConfig", "check_trainer_keys", "CONFIG_DIR", "REPO_ROOT", "TOKENIZER_FILES", "_read_yaml",
    "_resolve_path", "apply_override", "check_storage", "dump_config", "format_errors", "load_blend",
    "load_config", "parse_value", "validate_config", "ParamSpace", "SchedulerConfig", "SweepConfig",
    "TrialResources", "load_sweep",
]
