"""Fuzz entries for mlsys.common.devices."""

MODULES = ["mlsys.common.devices"]
ENTRIES = {
    "mlsys.common.devices.resolve_device": "junk",
    "mlsys.common.devices.resolve_precision": "junk",
    "mlsys.common.devices.check_same_device": "exempt: takes a torch module and tensors, not request data",
    "mlsys.common.devices.Precision": "exempt: a result record built by resolve_precision",
}
