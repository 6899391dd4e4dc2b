"""The registry's tables (SQLAlchemy 2.0 declarative models).

The registry never stores a secret: carriers are re-derived from the owner's master secret,
and only their commitment (a hash) is kept here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Owner(Base):
    """The owner's public signing key (one row); the private key stays in the key directory."""

    __tablename__ = "owner"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Dataset(Base):
    """A published image dataset, registered from an ImageFolder tree."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    classes: Mapped[list[str]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(Text)
    image_count: Mapped[int] = mapped_column(Integer)
    class_counts: Mapped[list[int]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    releases: Mapped[list[Release]] = relationship(back_populates="dataset", order_by="Release.id")


class Release(Base):
    """One marked copy of a dataset, with its own carriers (derived from the master secret
    and ``release_id``) and the commitment to them."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[str] = mapped_column(String(64), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    name: Mapped[str] = mapped_column(String(200))
    out_dir: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="in-progress")
    marker: Mapped[dict[str, Any]] = mapped_column(JSON)
    feature_dim: Mapped[int] = mapped_column(Integer)
    carrier_commitment: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    fraction: Mapped[float] = mapped_column(Float)
    marked_count: Mapped[int] = mapped_column(Integer, default=0)
    copied_count: Mapped[int] = mapped_column(Integer, default=0)
    psnr_mean: Mapped[float | None] = mapped_column(Float, nullable=True)
    psnr_min: Mapped[float | None] = mapped_column(Float, nullable=True)
    shift_mean: Mapped[float | None] = mapped_column(Float, nullable=True)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    dataset: Mapped[Dataset] = relationship(back_populates="releases")
    items: Mapped[list[MarkedItem]] = relationship(back_populates="release", order_by="MarkedItem.id")


class MarkedItem(Base):
    """One marked image of a release: where it came from, where it went, and its mark."""

    __tablename__ = "marked_items"
    __table_args__ = (UniqueConstraint("release_id", "source_path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    source_path: Mapped[str] = mapped_column(Text)
    release_path: Mapped[str] = mapped_column(Text)
    class_index: Mapped[int] = mapped_column(Integer)
    sha256_before: Mapped[str] = mapped_column(String(64))
    sha256_after: Mapped[str] = mapped_column(String(64))
    psnr: Mapped[float] = mapped_column(Float)
    shift: Mapped[float] = mapped_column(Float)

    release: Mapped[Release] = relationship(back_populates="items")


class Audit(Base):
    """One audit of a suspect model against one release."""

    __tablename__ = "audits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    model_digest: Mapped[str] = mapped_column(String(64))
    model_location: Mapped[str] = mapped_column(Text)
    adapter: Mapped[str] = mapped_column(String(50))
    mode: Mapped[str] = mapped_column(String(20))
    log10_p: Mapped[float] = mapped_column(Float)
    report_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    report_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
