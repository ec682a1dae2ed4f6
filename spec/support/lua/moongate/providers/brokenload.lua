-- A provider kind for the config specs: its module raises while loading,
-- as an operator's script with a bug does.
error("brokenload: this module fails on purpose")
