"""Plant adapters: historian files (replay); MQTT, OPC UA and HTTP later."""
