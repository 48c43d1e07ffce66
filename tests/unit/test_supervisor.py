import os
import signal
import subprocess
import sys
import textwrap
import time

from bot.supervisor import Process, supervise

CHATTY = [sys.executable, "-u", "-c", "import time\nfor i in range(600):\n    print('tick', i, flush=True); time.sleep(0.05)"]


def test_lines_are_prefixed_and_one_exit_stops_the_others(capsys, tmp_path):
    quits = [sys.executable, "-c", "print('bye'); raise SystemExit(3)"]
    code = supervise([Process("alpha", CHATTY), Process("beta", quits)], dict(os.environ), cwd=tmp_path)
    out = capsys.readouterr().out
    assert code == 3
    assert "   alpha | tick 0" in out and "    beta | bye" in out
    assert "beta exited with code 3" in out and "all stopped" in out


def test_ctrl_c_stops_every_process(tmp_path):
    pidfile = tmp_path / "pids"
    script = textwrap.dedent(f"""
        import os, sys
        from bot.supervisor import Process, supervise
        child = [sys.executable, "-c", "import os,time; open({str(pidfile)!r},'a').write(str(os.getpid())+'\\\\n'); time.sleep(600)"]
        raise SystemExit(supervise([Process("a", child), Process("b", child)], dict(os.environ)))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=os.getcwd(), stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while (not pidfile.exists() or len(pidfile.read_text().split()) < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    children = [int(p) for p in pidfile.read_text().split()]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert "all stopped" in out
    for pid in children:
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive, f"child {pid} still running"
