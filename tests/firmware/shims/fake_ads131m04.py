# Test double of a TI ADS131M04 on its SPI bus: register map, command/response pipeline
# (a command is answered in the next frame), 24-bit word frames with CRC-16-CCITT, input CRC
# check when MODE.RX_CRC_EN is set, the SYNC/RESET pin and the DRDY pin with its interrupt.
# Used by tests/firmware/mp_drivers.py through the real ADS131M04IO class.


def crc_ccitt(data, n):
    # Independent of the driver's viper version: bitwise CRC-16-CCITT, seed 0xFFFF.
    crc = 0xFFFF
    for i in range(n):
        crc ^= data[i] << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


RESET_REGS = {0x00: 0x2400, 0x01: 0x0500, 0x02: 0x0510, 0x03: 0x0F0E, 0x04: 0x0000,
              0x05: 0x0000, 0x06: 0x0600, 0x07: 0x0000, 0x08: 0x0000}


class FakePin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, name, v=1, on_change=None):
        self.name = name
        self._v = v
        self.handler = None
        self.trigger = 0
        self.on_change = on_change
        self.writes = 0

    def value(self, v=None):
        if v is None:
            return self._v
        v = 1 if v else 0
        old = self._v
        self._v = v
        self.writes += 1
        if self.on_change is not None and old != v:
            self.on_change(self, v)

    def irq(self, handler=None, trigger=0, hard=False):
        self.handler = handler
        self.trigger = trigger

    def fall(self):
        # The device pulls DRDY low: run the registered falling-edge handler.
        old = self._v
        self._v = 0
        if old and self.handler is not None and self.trigger & self.IRQ_FALLING:
            self.handler(self)


class FakeADS131M04:
    def __init__(self, id_word=0x2400):
        self.id_word = id_word
        self.cs = FakePin("cs", 1)
        self.drdy = FakePin("drdy", 1)
        self.sync_reset = FakePin("sync_reset", 1, self._sync_edge)
        self.spi = self               # write_readinto lives here
        self.frames = 0
        self.commands = []            # every command word received (NULLs excluded)
        self.writes = []              # (addr, value) of every WREG
        self.corrupt_next = False     # flip a bit of the next output frame after its CRC
        self.crc_rejected = 0
        self.powered_reset()

    # --- device state ----------------------------------------------------------------------
    def powered_reset(self):
        self.regs = [0] * 64
        for a, v in RESET_REGS.items():
            self.regs[a] = v
        self.regs[0] = self.id_word
        self.data = [0, 0, 0, 0]
        self.new = 0                  # DRDY bits: channels with unread data
        self.response = 0xFF24        # reset acknowledge is the first frame's answer
        self.drdy._v = 1
        self.resets = getattr(self, "resets", -1) + 1

    def _sync_edge(self, pin, v):
        if v == 1:                    # end of a low pulse: the driver holds it > 250 us
            self.powered_reset()

    def convert(self, c0, c1, c2, c3):
        # A new conversion: the data are replaced (read or not) and DRDY falls.
        self.data = [c0, c1, c2, c3]
        self.new = 0xF
        self.drdy._v = 1
        self.drdy.fall()

    def status(self):
        return (self.regs[1] & 0xFFF0) | self.new

    # --- SPI ---------------------------------------------------------------------------------
    def write_readinto(self, tx, rx):
        assert self.cs.value() == 0, "frame without CS low"
        assert len(tx) == len(rx) == 18, "frame is 6 words of 24 bits"
        self.frames += 1
        # output: previous response, the four channels, CRC over the 15 bytes before it
        out = bytearray(18)
        resp = self.status() if self.response is None else self.response
        out[0] = resp >> 8
        out[1] = resp & 0xFF
        for ch in range(4):
            v = self.data[ch] & 0xFFFFFF
            out[3 + 3 * ch] = v >> 16
            out[4 + 3 * ch] = (v >> 8) & 0xFF
            out[5 + 3 * ch] = v & 0xFF
        c = crc_ccitt(out, 15)
        out[15] = c >> 8
        out[16] = c & 0xFF
        if self.corrupt_next:
            out[7] ^= 0x10
            self.corrupt_next = False
        rx[:] = out
        self.new = 0                  # any frame reads the data out
        self.drdy._v = 1
        # input: command word, maybe a data word, maybe an input CRC
        cmd = (tx[0] << 8) | tx[1]
        nwords = 2 if cmd & 0xE000 == 0x6000 else 1
        if self.regs[2] & 0x1000:
            c = crc_ccitt(tx, 3 * nwords)
            got = (tx[3 * nwords] << 8) | tx[3 * nwords + 1]
            if c != got:
                self.crc_rejected += 1
                self.regs[1] |= 0x1000
                self.response = None
                return
        self._execute(cmd, tx)

    def _execute(self, cmd, tx):
        if cmd == 0x0000:
            self.response = None          # STATUS as it is when the next frame starts
            return
        self.commands.append(cmd)
        if cmd == 0x0011:
            self.powered_reset()
        elif cmd in (0x0022, 0x0033, 0x0555, 0x0655):
            self.response = cmd
        elif cmd & 0xE000 == 0xA000:
            addr = (cmd >> 7) & 0x3F
            assert cmd & 0x7F == 0, "fake supports single-register reads only"
            self.response = None if addr == 1 else self.regs[addr]
        elif cmd & 0xE000 == 0x6000:
            addr = (cmd >> 7) & 0x3F
            assert cmd & 0x7F == 0, "fake supports single-register writes only"
            v = (tx[3] << 8) | tx[4]
            self.writes.append((addr, v))
            if addr >= 2:
                if addr == 2:
                    # RESET flag: writing 0 clears it in MODE and STATUS
                    if not v & 0x0400:
                        self.regs[1] &= ~0x0400
                self.regs[addr] = v
            self.response = 0x4000 | (addr << 7)
        else:
            self.response = 0x0000
