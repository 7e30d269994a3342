import logging

import datasets
import transformers

from hf_magma.cli.parser import setup_logging


def test_setup_logging_sets_the_script_library_and_ecosystem_levels():
    saved = (datasets.utils.logging.get_verbosity(), transformers.utils.logging.get_verbosity())
    try:
        setup_logging("some_script", logging.WARNING)
        assert logging.getLogger("some_script").level == logging.WARNING
        assert logging.getLogger("hf_magma").level == logging.WARNING
        assert datasets.utils.logging.get_verbosity() == logging.WARNING
        assert transformers.utils.logging.get_verbosity() == logging.WARNING
    finally:
        datasets.utils.logging.set_verbosity(saved[0])
        transformers.utils.logging.set_verbosity(saved[1])
        for name in ("some_script", "hf_magma"):
            logging.getLogger(name).setLevel(logging.NOTSET)
