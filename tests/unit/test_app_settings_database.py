"""DATABASE=external: DATABASE_URL (a secret) instead of the stack's db service; NETWORK: an existing overlay.
Every error verbatim; the stack has no db service; the migration gate runs the same way."""

import pytest

from deploy.core.errors import ConfigError
from deploy.ship import config, plan, stackfile, swarm
from shipfakes import write_env

URL = "postgres://shop:pg-secret-pw@pg.internal:5432/shop"
D = "/var/lib/djdeploy/djt"


def external(tmp_path, extra=""):
    """The shipfakes env without POSTGRES_PASSWORD, with DATABASE=external."""
    write_env(tmp_path, "DATABASE=external\n" + extra)
    path = tmp_path / "lab.env"
    path.write_text(path.read_text().replace("POSTGRES_PASSWORD=pgsecret\n", ""))
    return path


def at(tmp_path, key):
    text = (tmp_path / "lab.env").read_text().splitlines()
    return f"{tmp_path}/lab.env:" + str(next(n for n, line in enumerate(text, 1) if line.startswith(key + "=")))


def problems(tmp_path):
    with pytest.raises(ConfigError) as err:
        config.load("lab", env_dir=tmp_path, environ={})
    return err.value.problems


def test_external_needs_database_url(tmp_path):
    path = external(tmp_path)
    assert problems(tmp_path) == [f"{path}: DATABASE_URL is required"]


def test_external_refuses_a_postgres_password_and_a_bad_url_without_showing_it(tmp_path):
    write_env(tmp_path, "DATABASE=external\nDATABASE_URL=mysql://u:hidden-pw@h/db\n")
    got = problems(tmp_path)
    assert got == [f"{at(tmp_path, 'POSTGRES_PASSWORD')}: POSTGRES_PASSWORD is not used with DATABASE=external; remove it",
                   f"{at(tmp_path, 'DATABASE_URL')}: DATABASE_URL must look like postgres://USER:PASSWORD@HOST:PORT/NAME "
                   "(value not shown)"]
    assert "hidden-pw" not in "".join(got)


def test_external_refuses_scheduled_backups_which_dump_the_stacks_own_db_service(tmp_path):
    (tmp_path / "dburl").write_text(URL + "\n")
    external(tmp_path, "DATABASE_URL_FILE=dburl\nBACKUP_SCHEDULE=on\n")
    assert problems(tmp_path) == [
        f"{at(tmp_path, 'BACKUP_SCHEDULE')}: BACKUP_SCHEDULE=on backs up the stack's own db service, which "
        "DATABASE=external has none of; use the managed database's backups, or `inv db.backup --env ENV` (it dumps "
        "DATABASE_URL's database)"]


def test_stack_database_refuses_a_database_url_and_unknown_kinds(tmp_path):
    write_env(tmp_path, f"DATABASE_URL={URL}\n")
    assert problems(tmp_path) == [f"{at(tmp_path, 'DATABASE_URL')}: DATABASE_URL is not used with DATABASE=stack; remove it"]
    write_env(tmp_path, "DATABASE=managed\n")
    assert problems(tmp_path) == [f"{at(tmp_path, 'DATABASE')}: DATABASE must be one of stack, external (got 'managed')"]


def test_external_stack_has_no_db_service_and_the_url_as_the_secret(tmp_path):
    (tmp_path / "dburl").write_text(URL + "\n")
    external(tmp_path, "DATABASE_URL_FILE=dburl\n")
    cfg = config.load("lab", env_dir=tmp_path, environ={})
    assert cfg.database == "external" and cfg.database_url == URL and URL in cfg.secrets
    spec = stackfile.stack_spec(cfg, "img", "v2", "T", "p")
    assert set(spec["services"]) == {"app", "proxy", "certs", "relay"} and set(spec["volumes"]) == {"certs", "sockets"}   # no pgdata
    assert set(stackfile.secret_values(cfg)) == {"django_secret_key", "database_url"}
    assert stackfile.secret_values(cfg)["database_url"] == URL
    assert URL not in stackfile.render(spec) and f"DATABASE_URL={URL}" in swarm.migrate_env(cfg).splitlines()


def lines(cfg):
    rel = plan.Release("deploy", "v2", False, True, False, "me\n", "T")
    state = plan.EnvState(digest="sha256:" + "f" * 64)
    return [s.line() for s in plan.build_deploy_plan(cfg, rel, state, "global\n").steps]


def test_external_plan_deploys_only_the_proxy_first_and_never_waits_for_a_db(tmp_path):
    external(tmp_path, f"DATABASE_URL={URL}\n")
    got = lines(config.load("lab", env_dir=tmp_path, environ={}))
    assert f"[manager] run deploy proxy and certs and relay: docker --config {D}/docker stack deploy --with-registry-auth " \
           f"--compose-file {D}/stack-base.yml djt" in got
    assert not [line for line in got if "djt_db" in line or "network create" in line]
    assert any("migrate the database once" in line and "--network djt_backend" in line for line in got)


def test_external_without_proxy_creates_the_stack_network_before_the_migration(tmp_path):
    external(tmp_path, f"DATABASE_URL={URL}\nPROXY=off\nPUBLISH_MODE=ingress\n")
    got = lines(config.load("lab", env_dir=tmp_path, environ={}))
    create = ("[manager] run create the stack's network: docker network create --driver overlay --attachable "
              "--label com.docker.stack.namespace=djt djt_backend")
    assert create in got and got.index(create) < next(i for i, l in enumerate(got) if "migrate the database" in l)
    assert not [line for line in got if "stack-base.yml" in line]


def test_an_existing_network_is_used_as_it_is(tmp_path):
    external(tmp_path, f"DATABASE_URL={URL}\nPROXY=off\nPUBLISH_MODE=ingress\nNETWORK=shared-pg\n")
    cfg = config.load("lab", env_dir=tmp_path, environ={})
    spec = stackfile.stack_spec(cfg, "img", "v2", "T", "p")
    assert spec["networks"] == {"backend": {"external": True, "name": "shared-pg"}}
    got = lines(cfg)
    assert not [line for line in got if "network create" in line]
    assert any("--network shared-pg" in line for line in got)


def test_network_name_is_validated(tmp_path):
    write_env(tmp_path, "NETWORK=bad name!\n")
    assert problems(tmp_path) == [f"{at(tmp_path, 'NETWORK')}: NETWORK must be a Docker network name (got 'bad name!')"]


def test_media_volume_mounts_a_shared_volume_and_keeps_every_replica_on_the_manager(tmp_path):
    write_env(tmp_path, "MEDIA_VOLUME=on\n")
    cfg = config.load("lab", env_dir=tmp_path, environ={})
    spec = stackfile.stack_spec(cfg, "img", "v2", "T", "p")
    app = spec["services"]["app"]
    assert app["volumes"][0] == {"type": "volume", "source": "media", "target": "/app/media"}
    assert spec["volumes"] == {"pgdata": {}, "media": {}, "certs": {}, "sockets": {}}
    assert app["deploy"]["placement"] == {"constraints": ["node.role == manager"]}
    assert app["environment"]["DJANGO_MEDIA_ROOT"] == "/app/media"
    assert app["environment"]["UWSGI_STATIC_MAP2"] == "/media/=/app/"
    write_env(tmp_path)
    plain = stackfile.stack_spec(config.load("lab", env_dir=tmp_path, environ={}), "img", "v2", "T", "p")
    assert [v for v in plain["services"]["app"]["volumes"] if v["type"] != "tmpfs"] == []
    assert plain["volumes"] == {"pgdata": {}, "certs": {}, "sockets": {}}


def test_media_volume_errors(tmp_path):
    write_env(tmp_path, "MEDIA_VOLUME=yes\n")
    assert problems(tmp_path) == [f"{at(tmp_path, 'MEDIA_VOLUME')}: MEDIA_VOLUME must be one of on, off (got 'yes')"]
    write_env(tmp_path, "MEDIA_VOLUME=on\nAPP_ENV_AWS_STORAGE_BUCKET_NAME=media\n")
    assert problems(tmp_path) == [f"{at(tmp_path, 'MEDIA_VOLUME')}: MEDIA_VOLUME=on and APP_ENV_AWS_STORAGE_BUCKET_NAME "
                                  "both place the uploads; keep one (S3 is what survives the loss of a node)"]
