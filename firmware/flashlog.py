# Device log: placeholder with the final interface (RAM only); the power-loss-safe
# implementation on littlefs replaces it (docs/protocol.md, "Device log").
K_EVENT = 1
K_SUMMARY = 2
K_ALARM = 3
K_CONFIG = 4
K_CALIB = 5
K_RETIGHTEN = 6
K_SECURITY = 7


class Log:
    def __init__(self, folder):
        self.folder = folder
        self.seq = 0
        self.records = []

    def append(self, kind, payload):
        """Queue a record (bytes); returns its sequence number. Never touches flash."""
        self.seq += 1
        self.records.append((self.seq, kind, bytes(payload)))
        return self.seq

    def service(self):
        """Called between samples: write queued records in large blocks when due."""
        pass

    def since(self, seq):
        return [r for r in self.records if r[0] > seq]
