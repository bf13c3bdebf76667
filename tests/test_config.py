import pytest

from curation.config import ConfigError, load_config


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


BASE = """
output_dir = "out"
[fma]
tracks_csv = "tracks.csv"
audio_dir = "audio"
[music]
checkpoint = "ckpt.pth"
labels_csv = "labels.csv"
[copyright]
spotify_tracks_csv = "spotify.csv"
"""


@pytest.fixture
def inputs(tmp_path):
    for f in ("tracks.csv", "ckpt.pth", "labels.csv", "spotify.csv"):
        (tmp_path / f).write_text("x")
    (tmp_path / "audio").mkdir()
    return tmp_path


def test_relative_paths_are_relative_to_the_config(inputs):
    cfg = load_config(write(inputs, BASE))
    assert cfg.output_dir == inputs / "out"
    assert cfg.fma.tracks_csv == inputs / "tracks.csv"
    assert cfg.music.threshold == 0.15 and cfg.music.min_music_seconds == 30.0


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda t: t.replace('tracks_csv = "tracks.csv"', 'tracks_csv = "nope.csv"'), "fma.tracks_csv"),
        (lambda t: t.replace('audio_dir = "audio"', 'audio_dir = "missing_dir"'), "missing_dir"),
        (lambda t: t.replace("[music]", "[music]\nthreshold = 2.0"), "music.threshold"),
        (lambda t: t.replace("[music]", "[music]\nthreshold = 'high'"), "music.threshold"),
        (lambda t: t.replace("[music]", "[music]\nbogus = 1"), "music.bogus"),
        (lambda t: t.replace('output_dir = "out"', ""), "output_dir"),
        (lambda t: t + "\n[training]\nenabled = true\n", "training.model_config"),
        (lambda t: t + "\n[nonsense]\n", "nonsense"),
        (lambda t: t + "\n[[broken", "not valid TOML"),
        (lambda t: t.replace("[copyright]", "[copyright]\naudio_backend = 'http'"), "copyright.http.endpoint"),
        (lambda t: t.replace("[copyright]", "[copyright]\naudio_backend = 'fingerprint'"),
         "copyright.fingerprint_index"),
        (lambda t: t.replace("[copyright]", "[copyright]\naudio_backend = 'magic'"), "copyright.audio_backend"),
        (lambda t: t + "\n[copyright.http]\nendpoint = 5\n", "copyright.http.endpoint"),
    ],
)
def test_bad_config_names_the_key(inputs, change, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(write(inputs, change(BASE)))


def test_http_backend_table(inputs):
    cfg = load_config(write(inputs, BASE.replace("[copyright]", "[copyright]\naudio_backend = 'http'") +
                            '[copyright.http]\nendpoint = "https://id.example/v1"\nfields = {tag = "{id}"}\n'))
    assert cfg.copyright.http.endpoint == "https://id.example/v1" and cfg.copyright.http.fields == {"tag": "{id}"}


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


def test_cli_reports_bad_config(inputs):
    from tests.conftest import curate

    p = write(inputs, BASE.replace('audio_dir = "audio"', 'audio_dir = "gone"'))
    proc = curate("run", str(p), check=False)
    assert proc.returncode == 2
    assert "fma.audio_dir" in proc.stderr and "gone" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_deployment_settings_default_and_checked(inputs):
    cfg = load_config(write(inputs, BASE))
    assert (cfg.deployment.name, cfg.deployment.work_pool, cfg.deployment.cron, cfg.deployment.timezone) == \
        ("daily", "curation", "0 3 * * *", "UTC")
    cfg = load_config(write(inputs, BASE + '[deployment]\ncron = "30 1 * * 1"\ntimezone = "Europe/Madrid"\n'))
    assert cfg.deployment.cron == "30 1 * * 1" and cfg.deployment.timezone == "Europe/Madrid"
    for bad, msg in (('cron = "every day"', "deployment.cron"), ('timezone = "Mars/Base"', "deployment.timezone"),
                     ('name = "a b"', "deployment.name")):
        with pytest.raises(ConfigError, match=msg):
            load_config(write(inputs, BASE + f"[deployment]\n{bad}\n"))


def test_api_budget_is_checked(inputs):
    with pytest.raises(ConfigError, match="daily_budget"):
        load_config(write(inputs, BASE + "[freesound.api]\ndaily_budget = 0\n"))
    cfg = load_config(write(inputs, BASE + "[freesound.api]\nper_minute = 0\n"))
    assert cfg.freesound.api.daily_budget == 2000 and cfg.freesound.api.per_minute == 0
