"""Typed experiment configs: the whole curriculum is validated before Ray starts.

    base.py         strict models, ConfigError, reading YAML
    sections.py     the sections of an experiment YAML (model, data, trainer, scaling, evaluation, ...)
    experiment.py   stages of registered kinds (train/registry.py) and the experiment as a whole
    loading.py      YAML and --set overrides in, blend files read, files and storage checked
    sweeps.py       a Ray Tune sweep over one stage

Import the module you need (`from tinyreason.config.loading import load_config`): this
package re-exports nothing, so the sections stay importable by the stage kinds that the
experiment module itself asks the registry about.
"""
