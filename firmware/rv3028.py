# Micro Crystal RV-3028-C7 real-time clock on I2C (address 0x52), read at boot so the device
# keeps its time axis across resets and power-ons (hardware/README.md section 4).
# Registers used (RV-3028-C7 Application Manual, section 3): 0x0E Status (bit 0 PORF: the
# supply fell below the voltage the time is kept at: time lost), 0x1B..0x1E the 32-bit UNIX
# Time counter (LSB first; it counts seconds independent of the calendar registers).
# The driver never raises: read() gives (unix seconds, valid) or (0, False) if no chip answers.
_ADDR = 0x52
_REG_STATUS = 0x0E
_REG_UNIX = 0x1B
_PORF = 0x01
CLOCK_VALID = 1577836800        # 2020-01-01: an earlier counter was never set


class RV3028:
    def __init__(self, i2c, addr=_ADDR):
        self.i2c = i2c
        self.addr = addr
        self.errors = 0

    def present(self):
        try:
            self.i2c.readfrom_mem(self.addr, _REG_STATUS, 1)
            return True
        except OSError:
            self.errors += 1
            return False

    def read(self):
        """(unix seconds, valid): valid when the chip answers, PORF is clear and the counter is
        past 2020."""
        try:
            st = self.i2c.readfrom_mem(self.addr, _REG_STATUS, 1)[0]
            b = self.i2c.readfrom_mem(self.addr, _REG_UNIX, 4)
        except OSError:
            self.errors += 1
            return 0, False
        t = b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)
        return t, not (st & _PORF) and t >= CLOCK_VALID

    def write(self, t):
        """Set the UNIX counter and clear PORF; True if the chip took it."""
        t = int(t) & 0xFFFFFFFF
        try:
            self.i2c.writeto_mem(self.addr, _REG_UNIX, bytes((t & 0xFF, (t >> 8) & 0xFF,
                                                             (t >> 16) & 0xFF, t >> 24)))
            st = self.i2c.readfrom_mem(self.addr, _REG_STATUS, 1)[0]
            self.i2c.writeto_mem(self.addr, _REG_STATUS, bytes((st & ~_PORF & 0xFF,)))
        except OSError:
            self.errors += 1
            return False
        return True
