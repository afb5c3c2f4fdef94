"""Every dataset checked on write: pandera schemas, great-expectations suites, messages, data docs."""
