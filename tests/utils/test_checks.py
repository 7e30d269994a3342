import math

import numpy as np
import pytest

from hf_magma.utils.checks import check_fraction, check_fractions, check_non_negative, check_number


@pytest.mark.parametrize("value", [0, 0.0, 2, 1.5, np.float32(0.25)])
def test_finite_non_negative_numbers_pass_as_floats(value):
    result = check_non_negative("weight", value)
    assert isinstance(result, float) and result == float(value)


@pytest.mark.parametrize("value", [-1, -0.5, math.inf, math.nan, True, "1", None])
def test_other_values_name_the_setting(value):
    with pytest.raises(ValueError, match=r"`weight` must be a finite non-negative number, got"):
        check_non_negative("weight", value)


def test_sign_and_integer_variants():
    assert check_number("lr", 1e-3, sign="positive") == 1e-3
    with pytest.raises(ValueError, match="`lr` must be a finite positive number, got 0"):
        check_number("lr", 0, sign="positive")
    assert check_number("steps", 3, integer=True) == 3
    with pytest.raises(ValueError, match="`steps` must be a finite non-negative integer, got 2.5"):
        check_number("steps", 2.5, integer=True)
    assert check_number("metric 'acc'", -0.5, sign=None) == -0.5
    with pytest.raises(ValueError, match="^metric 'acc' must be a finite number, got nan$"):
        check_number("metric 'acc'", math.nan, sign=None)


@pytest.mark.parametrize("value", [1, 1.0, 0.01, np.float64(0.5)])
def test_fractions_in_the_half_open_unit_interval_pass(value):
    assert check_fraction("fraction", value) == float(value)
    assert check_fractions("--label_fractions", [value, 1.0]) == [float(value), 1.0]


@pytest.mark.parametrize("value", [0, 0.0, -0.1, 1.01, math.nan, math.inf, True, "0.5", None])
def test_other_fractions_name_the_setting(value):
    with pytest.raises(ValueError, match=r"^`fraction` must be a fraction in \(0, 1\], got"):
        check_fraction("fraction", value)
    with pytest.raises(ValueError, match=r"^--label_fractions must be one or more fractions in \(0, 1\], got"):
        check_fractions("--label_fractions", [1.0, value])


@pytest.mark.parametrize("values", [[], (), "0.5", 0.5, None])
def test_fraction_lists_must_be_non_empty_sequences(values):
    with pytest.raises(ValueError, match="one or more fractions"):
        check_fractions("--label_fractions", values)
