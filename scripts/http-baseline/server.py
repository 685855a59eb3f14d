"""The design this project replaces, for scripts/compare-http: one HTTP call per 6-sample window to
a FastAPI + PyTorch service that scores the window with a dense autoencoder (42-32-16-8-16-32-42,
ReLU between layers: a 6-row x 7-metric window, the same hidden widths as anomaly-model's).

    python server.py PORT
"""

import sys

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

WINDOW, METRICS = 6, 7
torch.set_num_threads(1)
torch.manual_seed(7)


def autoencoder(width: int) -> torch.nn.Sequential:
    sizes = [width, 32, 16, 8, 16, 32, width]
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


model = autoencoder(WINDOW * METRICS)
app = FastAPI()


class Window(BaseModel):
    host: str
    rows: list[list[float]]


@app.post("/score")
def score(window: Window) -> dict:
    x = torch.tensor(window.rows, dtype=torch.float32).reshape(1, -1)
    with torch.no_grad():
        error = torch.mean((model(x) - x) ** 2).item()
    return {"host": window.host, "score": error}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
