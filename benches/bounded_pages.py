#!/usr/bin/env python3
"""Figures for pages that show what a candidate pushed (issue 24, items 2, 3, 4, 6): one push of
one shape to a daemon without workers, each answer timed and sized, the daemon's peak RSS
(VmHWM), and the time from SIGTERM to exit while the heaviest answer is under way.

    python3 benches/bounded_pages.py target/release/takehome SHAPE

SHAPE: newlines (20 files of 512 KiB of newlines), readme (README.md as 512 KiB of `a\n`),
similarity (20 .py files of `x\n`), message (three 20 MB commit messages), dense, manyfiles.
docs/security.md ("Bounded pages") keeps the figures."""
import base64, os, socket, subprocess, sys, tempfile, threading, time, urllib.parse

BIN, SHAPE = sys.argv[1], sys.argv[2]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "correct horse battery"
data, work = tempfile.mkdtemp(), tempfile.mkdtemp()
hash_ = subprocess.run([BIN, "hash-password"], input=PASSWORD, capture_output=True, text=True).stdout.strip().splitlines()[-1]
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
env = dict(os.environ, TAKEHOME_TASKS_ROOT=ROOT, TAKEHOME_ASSESSOR_USER="ada", TAKEHOME_ASSESSOR_PASSWORD_HASH=hash_, TAKEHOME_LOG="warn")
daemon = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--workers", "0", "--data-dir", data], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def raw(method, path, extra="", body="", timeout=300):
    c = socket.create_connection(("127.0.0.1", port)); c.settimeout(timeout)
    c.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n{extra}\r\n{body}".encode())
    out = bytearray()
    while True:
        chunk = c.recv(1 << 20)
        if not chunk: break
        out += chunk
    head, _, rest = bytes(out).partition(b"\r\n\r\n")
    return int(head.split()[1]) if head else 0, head.decode(errors="replace"), rest

for _ in range(300):
    try:
        if raw("GET", "/healthz")[0] == 200: break
    except OSError: pass
    time.sleep(0.2)

def peak():
    for line in open(f"/proc/{daemon.pid}/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1])

out = subprocess.run([BIN, "assign", "--task", "penguins-cleaning", "--candidate", "m@example.com", "--data-dir", data], env=env, capture_output=True, text=True).stdout
field = lambda name: next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith(name))
user, token = field("user:"), field("token:")
repo = os.path.join(work, "repo")
git = lambda *a: subprocess.run(["git", "-c", "user.name=C", "-c", "user.email=c@e", *a], cwd=repo if os.path.isdir(repo) else work, check=True, capture_output=True)
subprocess.run(["git", "clone", "-q", f"http://{user}:{token}@127.0.0.1:{port}/git/{user}.git", repo], check=True, capture_output=True)

def push(message="shape"):
    git("add", "-A")
    with open(os.path.join(work, "msg"), "w") as f: f.write(message)
    git("commit", "-q", "-F", os.path.join(work, "msg"))
    git("push", "-q", "origin", "main")

if SHAPE == "newlines":
    for i in range(20):
        open(os.path.join(repo, f"blank{i:02}.py"), "wb").write(b"\n" * (512 << 10))
    push()
elif SHAPE == "readme":
    open(os.path.join(repo, "README.md"), "w").write("a\n" * (256 << 10))
    push()
elif SHAPE == "similarity":
    for i in range(20):
        open(os.path.join(repo, f"x{i:02}.py"), "w").write("x\n" * (256 << 10))
    push()
elif SHAPE == "dense":
    for i in range(20):
        open(os.path.join(repo, f"d{i:02}.py"), "w").write(("a+" * 60 + "a\n") * 2100)
    push()
elif SHAPE == "manyfiles":
    for i in range(400):
        open(os.path.join(repo, f"m{i:03}.py"), "w").write(f"x = {i}\n" * 50)
    push()
elif SHAPE == "message":
    for n in range(3):
        open(os.path.join(repo, "clean.py"), "w").write(f"print({n})\n")
        push("a long story\n\n" + "m" * (20 << 20))

basic = "Authorization: Basic " + base64.b64encode(f"ada:{PASSWORD}".encode()).decode() + "\r\n"
st, head, _ = raw("POST", "/login", "Content-Type: application/x-www-form-urlencoded\r\n", f"user=ada&password={urllib.parse.quote(PASSWORD)}")
cookie = "Cookie: " + next(l.split(":", 1)[1].strip() for l in head.splitlines() if l.lower().startswith("set-cookie")).split(";")[0] + "\r\n"
import json
ids = [r["id"] for r in json.loads(raw("GET", f"/api/submissions?assignment={user}", basic)[2])]
sid = ids[0]
print(f"{SHAPE}: daemon peak RSS after the push {peak()} kB")
paths = {
    "newlines": [(f"/submissions/{sid}/code", cookie), (f"/api/submissions/{sid}/files", basic), (f"/submissions/{sid}", cookie)],
    "readme": [(f"/api/submissions/{sid}/files", basic), (f"/submissions/{sid}", cookie), (f"/submissions/{sid}/code", cookie)],
    "similarity": [("/tasks/penguins-cleaning/similarity", cookie), ("/tasks/penguins-cleaning/similarity", cookie), ("/api/tasks/penguins-cleaning/similarity", basic)],
    "message": [(f"/submissions/{sid}", cookie), (f"/api/submissions/{sid}/review", basic)],
    "dense": [(f"/submissions/{sid}/code", cookie), (f"/api/submissions/{sid}/files", basic)],
    "manyfiles": [(f"/submissions/{sid}/code", cookie), (f"/api/submissions/{sid}/files", basic)],
}[SHAPE]
for path, auth in paths:
    t = time.time(); st, _, body = raw("GET", path, auth); took = time.time() - t
    print(f"{SHAPE}: GET {path}: {st}, {len(body)} bytes in {took:.2f} s; peak RSS {peak()} kB")
if SHAPE == "similarity":
    f = os.path.join(data, "similarity", f"{sid}.json")
    print(f"{SHAPE}: stored fingerprints {os.path.getsize(f)} bytes")
# SIGTERM while the heaviest answer is under way.
t = threading.Thread(target=lambda: raw("GET", paths[0][0], paths[0][1], timeout=600) if True else None, daemon=True)
if SHAPE == "similarity":
    os.remove(os.path.join(data, "similarity", f"{sid}.json"))
t.start(); time.sleep(0.3)
started = time.time(); daemon.terminate()
try:
    daemon.wait(120); print(f"{SHAPE}: exited {time.time() - started:.2f} s after SIGTERM (a request under way)")
except subprocess.TimeoutExpired:
    print(f"{SHAPE}: still running 120 s after SIGTERM"); daemon.kill()
