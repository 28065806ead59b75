# Entry point on the ESP32 (and in the virtual device): start the monitor.
import app

app.main()
