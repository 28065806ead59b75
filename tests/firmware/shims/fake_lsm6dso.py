# Test double of an ST LSM6DSO32 on its I2C bus: WHO_AM_I, the control registers, and a FIFO of
# 7-byte words (tag, X/Y/Z int16 LE) with its capacity, DIFF_FIFO/overrun status and the
# continuous-mode overwrite of the oldest words. Used by tests/firmware/mp_imu.py through the
# real LSM6DSOIO class (readfrom_mem_into / writeto_mem like machine.I2C).


class FakeLSM6DSO:
    CAPACITY = 438              # 3 KB / 7 B words (datasheet: FIFO up to 3 kbyte)

    def __init__(self, who=0x6C):
        self.regs = {0x0F: who}
        self.fifo = []          # list of 7-byte bytes
        self.ovr = False
        self.fail = False       # raise OSError on the next access (bus error)
        self.writes = []

    # the I2C interface of machine.I2C
    def readfrom_mem_into(self, addr, reg, buf):
        if self.fail:
            raise OSError(19)
        if reg == 0x3A:
            n = len(self.fifo)
            buf[0] = n & 0xFF
            buf[1] = ((n >> 8) & 3) | (0x40 if self.ovr else 0)
            self.ovr = False
            return
        if reg == 0x78:
            k = len(buf) // 7
            for i in range(k):
                w = self.fifo.pop(0)
                for j in range(7):
                    buf[7 * i + j] = w[j]
            return
        for i in range(len(buf)):
            buf[i] = self.regs.get(reg + i, 0)

    def writeto_mem(self, addr, reg, buf):
        if self.fail:
            raise OSError(19)
        self.regs[reg] = buf[0]
        self.writes.append((reg, buf[0]))

    # the physical side
    def _word(self, tag, x, y, z):
        b = bytearray(7)
        b[0] = tag << 3
        for i, v in enumerate((x, y, z)):
            v &= 0xFFFF
            b[1 + 2 * i] = v & 0xFF
            b[2 + 2 * i] = v >> 8
        self.fifo.append(bytes(b))
        if len(self.fifo) > self.CAPACITY:
            self.fifo.pop(0)
            self.ovr = True

    def sample(self, acc_lsb, gyro_lsb):
        """One ODR tick with both sensors batched: a gyroscope then an accelerometer word."""
        self._word(1, *gyro_lsb)
        self._word(2, *acc_lsb)
