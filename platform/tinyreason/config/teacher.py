"""The `teacher:` stage section of a distill stage (train/distill.py): the model whose
next-token distributions the student learns. The same reference forms as a teacher blend
source (tinyreason/refs.py): an earlier stage's name, a model dir, a .gguf file, a hub id."""

from __future__ import annotations

from pydantic import Field

from tinyreason.config.base import Strict


class TeacherSection(Strict):
    model: str  # an earlier stage's name, a model dir, a .gguf file, or a hub id
    # held-out synthetic problems on which the stage measures the student's KL to the teacher,
    # before and after training (the summary's heldout_kl_before / heldout_kl_after); 0: off
    heldout_kl_rows: int = Field(32, ge=0)
