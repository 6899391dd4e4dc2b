import numpy as np
import pytest
from scipy import stats as sps

from auditkit.carriers import carrier_commitment, derive_carriers, gaussian_stream

SECRET = bytes(range(32))


def test_golden_value_is_stable_across_machines_and_versions() -> None:
    carriers = derive_carriers(SECRET, "release-0", 3, 8)
    assert carriers.dtype == np.float32 and carriers.shape == (3, 8)
    # Fixed forever: changing the derivation would make existing releases unauditable.
    np.testing.assert_allclose(carriers[0, :4], GOLDEN_ROW0, atol=1e-7)
    assert carrier_commitment(carriers) == GOLDEN_COMMITMENT


def test_rows_are_unit_and_depend_on_every_input() -> None:
    base = derive_carriers(SECRET, "r", 10, 64)
    np.testing.assert_allclose(np.linalg.norm(base, axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(base, derive_carriers(SECRET, "r", 10, 64))
    assert not np.allclose(base, derive_carriers(SECRET, "r2", 10, 64))
    assert not np.allclose(base, derive_carriers(bytes(32), "r", 10, 64))
    assert not np.allclose(base, derive_carriers(SECRET, "r", 10, 64, purpose="control-0"))


def test_gaussian_stream_is_standard_normal() -> None:
    z = gaussian_stream(b"k" * 32, 20_000)
    assert sps.kstest(z, "norm").pvalue > 0.01


def test_carriers_are_uniform_on_the_sphere() -> None:
    # Cosines of uniform unit vectors with a fixed axis follow 2·Beta(a, a) - 1, a = (d-1)/2.
    dim = 16
    carriers = derive_carriers(SECRET, "uniformity", 3000, dim)
    a = (dim - 1) / 2
    assert sps.kstest((carriers[:, 0] + 1) / 2, sps.beta(a, a).cdf).pvalue > 0.01


def test_commitment_binds_values_and_shape() -> None:
    carriers = derive_carriers(SECRET, "r", 4, 16)
    changed = carriers.copy()
    changed[0, 0] = np.nextafter(changed[0, 0], 2)
    assert carrier_commitment(carriers) != carrier_commitment(changed)
    assert carrier_commitment(carriers) != carrier_commitment(carriers.reshape(8, 8))


def test_rejects_degenerate_shapes() -> None:
    with pytest.raises(ValueError):
        derive_carriers(SECRET, "r", 0, 16)


GOLDEN_ROW0 = [-0.2980175018310547, 0.12246941775083542, -0.19705963134765625, 0.5727003812789917]
GOLDEN_COMMITMENT = "b351d3e3394d5dd5a209fca87d03d2d1350d3a7dad2d02d92158c49557b8e1fd"


def test_selection_seed_is_derived_like_the_carriers() -> None:
    from auditkit.carriers import derive_selection_seed

    seed = derive_selection_seed(b"\x01" * 32, "release-a")
    assert seed == derive_selection_seed(b"\x01" * 32, "release-a") and 0 <= seed < 2**63
    assert seed != derive_selection_seed(b"\x01" * 32, "release-b") != derive_selection_seed(b"\x02" * 32, "release-a")
