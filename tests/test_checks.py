import math

import numpy as np
import pytest

from hf_magma.checks import check_non_negative, check_number


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
