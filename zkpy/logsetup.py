"""Logging for a server process (the core and each worker): a `logging.conf` beside zoo.cfg
(Python's logging.config.fileConfig format), or ZooKeeper's line format at INFO."""

import logging
import logging.config
import os

LINE_FORMAT = "%(asctime)s [myid:] - %(levelname)s [%(name)s] - %(message)s"


def setup_logging(cfg_path):
    logging_conf = os.path.join(os.path.dirname(os.path.abspath(cfg_path)), "logging.conf")
    if os.path.exists(logging_conf):
        logging.config.fileConfig(logging_conf, disable_existing_loggers=False)
    else:
        logging.basicConfig(level=logging.INFO, format=LINE_FORMAT)
