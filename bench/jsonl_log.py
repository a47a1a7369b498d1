"""One JSON line per measurement: stamped with the machine load and UTC time,
appended to a file and printed (shared by the bench scripts)."""

import json
import os
import time


def append_record(record: dict, path: str) -> dict:
  """Adds `loadavg` (1, 5, 15 min) and `time` to `record`, appends it to the
  JSON-lines file `path`, prints it; returns the stamped record."""
  record = dict(record, loadavg=[round(x, 2) for x in os.getloadavg()],
                time=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()))
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")
  print(json.dumps(record), flush=True)
  return record
