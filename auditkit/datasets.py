"""Registering datasets and looking them up."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from auditkit.errors import AuditkitError
from auditkit.imagefolder import check_readable, scan_image_folder
from auditkit.registry.models import Dataset, Release
from auditkit.registry.store import Registry


def add_dataset(registry: Registry, name: str, source: Path) -> Dataset:
    """Register the ImageFolder tree ``source`` as dataset ``name`` (classes in sorted
    order, as torchvision's ImageFolder). Every image header is checked."""
    if not name or "/" in name:
        raise AuditkitError(f"invalid dataset name {name!r}; use letters, digits, '-' or '_'")
    source = Path(source).resolve()
    scan = scan_image_folder(source)
    for entry in scan.images:
        check_readable(source / entry.relpath)
    with registry.session() as session:
        if session.scalar(select(Dataset).where(Dataset.name == name)) is not None:
            raise AuditkitError(f"dataset {name!r} already exists; choose another name or use it as it is")
        dataset = Dataset(
            name=name,
            classes=scan.classes,
            source=str(source),
            image_count=len(scan.images),
            class_counts=scan.class_counts(),
        )
        session.add(dataset)
    return dataset


def get_dataset(session: Session, name: str) -> Dataset:
    dataset = session.scalar(
        select(Dataset).where(Dataset.name == name).options(selectinload(Dataset.releases))
    )
    if dataset is None:
        known = session.scalars(select(Dataset.name).order_by(Dataset.name)).all()
        hint = f"known datasets: {', '.join(known)}" if known else "add one with `auditkit dataset add`"
        raise AuditkitError(f"no dataset named {name!r}; {hint}")
    return dataset


def list_datasets(registry: Registry) -> list[Dataset]:
    with registry.session() as session:
        return list(session.scalars(select(Dataset).options(selectinload(Dataset.releases)).order_by(Dataset.name)))


def get_release(session: Session, dataset: Dataset, name: str) -> Release:
    for release in dataset.releases:
        if release.name == name:
            return release
    names = ", ".join(r.name for r in dataset.releases) or "none yet"
    raise AuditkitError(f"dataset {dataset.name!r} has no release {name!r} (releases: {names})")


def dataset_summary(dataset: Dataset) -> dict[str, object]:
    """A JSON-ready description of a dataset."""
    return {
        "name": dataset.name,
        "source": dataset.source,
        "classes": dataset.classes,
        "class_counts": dataset.class_counts,
        "image_count": dataset.image_count,
        "created": dataset.created.isoformat(),
        "releases": [r.name for r in dataset.releases],
    }
