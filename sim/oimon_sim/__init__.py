"""oimon simulator: scenarios, bit-exact model of the firmware, replay, metrics, virtual device."""
