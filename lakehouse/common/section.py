"""The base of every settings group and of the sources file's sections."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A group of settings or of a sources file: immutable, and unknown keys are refused (a typo is an error)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
