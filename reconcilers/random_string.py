"""OS::Heat::RandomString: a random string (a password, a token) that never shows in status.

Heat's semantics:
- `length` (1-512, default 32); `character_classes`, a list of
  `{class, min}` (class one of lettersdigits, letters, lowercase, uppercase,
  digits, hexdigits, octdigits, default lettersdigits; min 1-512, default 1);
  `character_sequences`, a list of `{sequence, min}` (min 1-512, default 1).
  The string holds at least `min` characters of every class and sequence, the
  rest drawn from all of them, in random order; with neither, it is made of
  letters and digits. The mins together may not exceed `length`. Heat's
  hidden, deprecated `sequence` (one class name) is still accepted, alone.
- `salt` is ignored by the generator; changing it asks for a new string.
- No property changes in place: any change replaces the resource, so a new
  string is made and the old one is deleted by the cleanup afterwards.
- Attribute `value` and `get_resource` give the string. Beyond Heat,
  attribute `secret_name` names where it is kept (the Secret's name in
  Kubernetes), for consumers that read it from there.

Where the string lives: in the engine's SecretStore under the physical name
(in the operator a Secret in the stack's namespace owned by the resource's
StackResource; see kube/secrets.py). The engine stores attributes and
reference ids in StackResource status, pushes them through sync points
(other StackResources' status) and resolves outputs into the Stack's status,
so `value` and the reference id are not the string but a reference to it
(`secret_token`); the engine puts the string in only where it gives resolved
properties to a type (engine/sensitive.py) and keeps storing the references.
So `get_attr: [pw, value]` in another resource's properties works as in Heat
while no status, sync point, output or Event holds the string; an output of
it shows the reference. A dependent type may still keep what it was given in
its own persisted data, which is in its status (OS::Heat::TestResource does);
Kubernetes objects that need the string should read the Secret named by
`secret_name` (e.g. `secretKeyRef`, key `value`) rather than take the value.

A create retried after a crash finds the entry it wrote and keeps it. The
delete removes the entry; with `deletion_policy: Retain` the engine calls
`retain`, which unties the entry from the stack so that it outlives it.
"""

from __future__ import annotations

import secrets as system_random
import string
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from convergence.operator.engine.plugin import (
    Cookie,
    PropertiesModel,
    ResourceFailure,
    ResourceType,
    SecretStore,
    secret_token,
)

CharacterClassName = Literal[
    "lettersdigits", "letters", "lowercase", "uppercase", "digits", "hexdigits", "octdigits"
]

# The characters of each class, as Heat defines them (hexdigits are uppercase there).
CHARACTER_CLASSES: dict[str, str] = {
    "lettersdigits": string.ascii_letters + string.digits,
    "letters": string.ascii_letters,
    "lowercase": string.ascii_lowercase,
    "uppercase": string.ascii_uppercase,
    "digits": string.digits,
    "hexdigits": string.digits + "ABCDEF",
    "octdigits": string.octdigits,
}

VALUE_KEY = "value"
MAX_LENGTH = 512


class CharacterClass(BaseModel):
    """At least `min` characters of class `class` (`class_` in Python)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    class_: CharacterClassName = Field("lettersdigits", alias="class")
    min: int = Field(1, ge=1, le=MAX_LENGTH)


class CharacterSequence(BaseModel):
    """At least `min` characters taken from the string `sequence`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sequence: str = Field(..., min_length=1)
    min: int = Field(1, ge=1, le=MAX_LENGTH)


class RandomStringProperties(PropertiesModel):
    """Properties of OS::Heat::RandomString; none may change in place."""

    length: int = Field(32, ge=1, le=MAX_LENGTH, description="Length of the string to generate.")
    sequence: CharacterClassName | None = Field(
        None, description="Deprecated (Heat hides it): one character class to build from."
    )
    character_classes: list[CharacterClass] | None = Field(
        None, description="Character classes and the minimum count of each."
    )
    character_sequences: list[CharacterSequence] | None = Field(
        None, description="Character sequences and the minimum count of each."
    )
    salt: str | None = Field(
        None, description="Ignored by the generator; change it to get a new string."
    )

    @model_validator(mode="after")
    def _fits(self) -> RandomStringProperties:
        if self.sequence is not None and (self.character_classes or self.character_sequences):
            raise ValueError(
                "Cannot use deprecated 'sequence' property along with 'character_sequences' "
                "or 'character_classes' properties"
            )
        minimum = sum(c.min for c in self.character_classes or ()) + sum(
            s.min for s in self.character_sequences or ()
        )
        if minimum > self.length:
            raise ValueError(
                f"Length property ({self.length}) cannot be smaller than combined character "
                f"class and character sequence minimums ({minimum})"
            )
        return self


def generate(properties: RandomStringProperties) -> str:
    """A new random string fulfilling the properties (from the system's secure source)."""
    pools = [(CHARACTER_CLASSES[c.class_], c.min) for c in properties.character_classes or ()]
    pools += [(s.sequence, s.min) for s in properties.character_sequences or ()]
    if not pools:
        pools = [(CHARACTER_CLASSES[properties.sequence or "lettersdigits"], 0)]
    chars = [system_random.choice(pool) for pool, minimum in pools for _ in range(minimum)]
    # The rest: a pool chosen at random, then a character of it, so that each class or
    # sequence is equally likely whatever its size.
    while len(chars) < properties.length:
        pool, _ = system_random.choice(pools)
        chars.append(system_random.choice(pool))
    system_random.SystemRandom().shuffle(chars)
    return "".join(chars)


class RandomString(ResourceType):
    """A resource which generates a random string, kept in the secret store."""

    Properties: ClassVar[type[PropertiesModel]] = RandomStringProperties
    attributes_schema: ClassVar[dict[str, str]] = {
        "value": "The random string generated by this resource. This value is also "
        "available by referencing the resource (a reference to the secret where it is "
        "stored travels in its place; see the module).",
        "secret_name": "Where the string is kept: the name of the Secret (key `value`).",
    }
    # Nothing in Reality: the secret store entry is its physical resource.
    has_physical_resource: ClassVar[bool] = False

    @property
    def props(self) -> RandomStringProperties:
        """The properties of the action at hand, typed."""
        assert isinstance(self.properties, RandomStringProperties)
        return self.properties

    def _store(self) -> SecretStore:
        if self.context.secrets is None:
            raise ResourceFailure(
                "OS::Heat::RandomString needs a secret store, and this engine has none"
            )
        return self.context.secrets

    def create(self) -> Cookie:
        store = self._store()
        name = self.context.physical_name()
        existing = store.read(name)
        if existing is None or VALUE_KEY not in existing.data:
            store.write(
                name,
                {VALUE_KEY: generate(self.props)},
                stack=self.context.stack.name,
                logical_name=self.context.name,
                record_id=self.context.record_id,
            )
        self.context.resource_id = name
        return None

    def check_create_complete(self, cookie: Cookie) -> bool:
        return True

    def delete(self) -> Cookie:
        if self.context.resource_id is not None:
            self._store().delete(self.context.resource_id)
        return None

    def retain(self) -> None:
        if self.context.resource_id is not None:
            self._store().release(self.context.resource_id)

    def reference_id(self) -> str | None:
        if self.context.resource_id is None:
            return self.context.name
        return secret_token(self.context.resource_id, VALUE_KEY)

    def get_attribute(self, name: str) -> Any:
        if self.context.resource_id is None:
            return None
        if name == "value":
            return secret_token(self.context.resource_id, VALUE_KEY)
        if name == "secret_name":
            return self._store().locate(self.context.resource_id)
        return None
