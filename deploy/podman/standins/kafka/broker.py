"""Runs Tansu as the one broker of KAFKA_LISTENERS / KAFKA_ADVERTISED_LISTENERS (their PLAINTEXT entry)."""

import os
import sys


def plaintext(variable: str, default: str) -> str:
    for listener in os.environ.get(variable, default).split(","):
        name, _, address = listener.partition("://")
        if name == "PLAINTEXT":
            return address
    sys.exit(f"{variable} has no PLAINTEXT listener")


host, _, port = plaintext("KAFKA_LISTENERS", "PLAINTEXT://:9092").rpartition(":")
advertised = plaintext("KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://localhost:9092")
command = ["tansu", "broker", "--cluster-id", os.environ.get("CLUSTER_ID", "taifa-standin"),
           "--listener-url", f"tcp://{host or '0.0.0.0'}:{port}", "--advertised-listener-url", f"tcp://{advertised}",
           "--storage-engine", "memory://tansu/"]  # fmt: skip
print("stand-in broker:", " ".join(command), flush=True)
os.execvp(command[0], command)  # noqa: S606 - becomes the broker process (PID 1)
