#!/usr/bin/env bash
# Vendored copy of the workplace tool shared/tools/tc-podman/setup.sh (its README explains it),
# so that CI on a fresh machine can give testcontainers a Docker API. .ci/run prefers the shared one.
# tc-podman/setup.sh -- rootful podman + a locally built "postgres" image for
# testcontainers-python on a Debian bookworm machine with no Docker engine and
# no reachable container registry (only Debian apt).
#
#   eval "$(setup.sh)"     install/configure/build as needed, start the podman
#                          API service, print the export lines (nothing else
#                          goes to stdout; progress goes to stderr)
#   setup.sh stop          remove leftover containers, stop the service, remove
#                          the CNI iptables chains / cni-podman0 bridge
#   setup.sh purge         stop + delete the state dir (image cache included)
#
# Environment knobs:
#   TC_PODMAN_DIR          state dir (default /tmp/tc-podman)
#   TC_PODMAN_REBUILD=1    rebuild the postgres image even if cached
#   TC_PODMAN_KEEP_BUILD=1 keep the debootstrap chroot ($TC_PODMAN_DIR/build)
#   TC_PODMAN_MIRROR       Debian mirror (default: the host's own apt source for the main suite)
#   TC_PODMAN_SECURITY_MIRROR (default: the host's own apt source for -security)
#   TC_PODMAN_EXTRA_TAGS   more names for the same image, e.g. "postgres:15 postgres:16.4"
#   TC_PODMAN_STORAGE_DRIVER  auto (default: overlay if the kernel lets us mount it,
#                          else vfs) | overlay | vfs. Fixed once the store exists.
set -euo pipefail

DIR=${TC_PODMAN_DIR:-/tmp/tc-podman}
DIR=${DIR%/}
SOCK=$DIR/podman.sock
PIDFILE=$DIR/service.pid
LOGFILE=$DIR/service.log
SUITE=bookworm
# the host's own apt sources (deb822 or one-line form): first URI whose suites include $1
host_apt_uri() {
	local want=$1 f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && awk -v want="$want" '
			/^URIs:/ {u=$2} /^Suites:/ {for (i=2;i<=NF;i++) if ($i==want) {print u; exit}}
			/^$/ {u=""}' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] && awk -v want="$want" '$1=="deb" && $3==want {print $2; exit}' "$f"
	done
	return 0
}
MIRROR=${TC_PODMAN_MIRROR:-$(host_apt_uri "$SUITE" | head -n 1)}
SEC_MIRROR=${TC_PODMAN_SECURITY_MIRROR:-$(host_apt_uri "$SUITE-security" | head -n 1)}
RECIPE=6 # bump whenever the image recipe below changes (forces a rebuild)
IMAGE=docker.io/library/postgres:16
TAGS=(docker.io/library/postgres:16 docker.io/library/postgres:16-alpine docker.io/library/postgres:latest)
for t in ${TC_PODMAN_EXTRA_TAGS:-}; do
	case "$t" in */*) TAGS+=("$t") ;; *) TAGS+=("docker.io/library/$t") ;; esac
done
HOST_PKGS=(podman runc conmon containernetworking-plugins iptables)

# stdout is reserved for the export lines: keep it on fd 3, send the rest to stderr
exec 3>&1 1>&2

log() { printf '[tc-podman] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
case "$DIR" in /*) ;; *) die "TC_PODMAN_DIR must be an absolute path" ;; esac

export CONTAINERS_CONF=$DIR/containers.conf
export CONTAINERS_STORAGE_CONF=$DIR/storage.conf
unset CONTAINER_HOST CONTAINER_CONNECTION DOCKER_HOST || true

service_pid() { # prints the pid of our running API service, fails if none
	local pid
	[ -f "$PIDFILE" ] || return 1
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "system service --time=0 unix://$SOCK" || return 1
	echo "$pid"
}

# ---------------------------------------------------------------- stop / purge
ipt_del() { # delete a rule if present:  ipt_del [-t table] CHAIN rule...
	local t=(-t filter)
	if [ "$1" = -t ]; then t=(-t "$2"); shift 2; fi
	local chain=$1; shift
	while iptables "${t[@]}" -C "$chain" "$@" 2>/dev/null; do
		iptables "${t[@]}" -D "$chain" "$@" || break
	done
}
ipt_drop_chain() { # flush + delete a chain if present: ipt_drop_chain table CHAIN
	if iptables -t "$1" -n -L "$2" >/dev/null 2>&1; then
		iptables -t "$1" -F "$2" || true
		iptables -t "$1" -X "$2" || log "could not delete chain $1/$2 (still referenced?)"
	fi
}
net_cleanup() {
	command -v iptables >/dev/null || return 0
	if [ -d /sys/class/net/cni-podman0/brif ] && [ -n "$(ls -A /sys/class/net/cni-podman0/brif 2>/dev/null)" ]; then
		log "cni-podman0 still has containers attached (another podman store?); leaving network rules alone"
		return 0
	fi
	if iptables-save -t nat 2>/dev/null | grep -qE '^:CNI-([0-9a-f]{24}|DN-)'; then
		log "per-container CNI chains still exist (another podman store?); leaving network rules alone"
		return 0
	fi
	ipt_del -t nat PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
	ipt_del -t nat OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
	ipt_del -t nat POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
	local c
	for c in CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK; do ipt_drop_chain nat "$c"; done
	ipt_del FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD
	for c in CNI-FORWARD CNI-ADMIN; do ipt_drop_chain filter "$c"; done
	if ip link show cni-podman0 >/dev/null 2>&1; then
		ip link delete cni-podman0 && log "removed bridge cni-podman0"
	fi
}
kill_stray_conmon() { # conmons of our exec sessions linger for exit_command_delay
	local p pid argv0 cmd pids=()
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
		argv0=${cmd%% *}
		[ "${argv0##*/}" = conmon ] || continue
		case "$cmd" in *" $DIR/storage/"*"--exec-process-spec"*) pids+=("$pid") ;; esac
	done
	if [ "${#pids[@]}" -gt 0 ]; then
		log "stopping ${#pids[@]} leftover conmon process(es) of $DIR"
		kill -TERM "${pids[@]}" 2>/dev/null || true
		local i alive
		for i in $(seq 1 20); do
			alive=()
			for pid in "${pids[@]}"; do
				# zombies (state Z) count as gone
				[ -r "/proc/$pid/stat" ] && [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ] && alive+=("$pid")
			done
			[ "${#alive[@]}" -eq 0 ] && break
			sleep 0.1
		done
		if [ "${#alive[@]}" -gt 0 ]; then kill -KILL "${alive[@]}" 2>/dev/null || true; fi
	fi
}
umount_under() { # unmount everything below $1, deepest first
	awk -v d="$1/" 'index($2 "/", d) == 1 {print $2}' /proc/mounts | sort -r |
		while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}
do_stop() {
	local pid i remaining=
	if [ -f "$CONTAINERS_CONF" ] && [ -f "$CONTAINERS_STORAGE_CONF" ] && command -v podman >/dev/null; then
		# testcontainers runs without Ryuk here, so an aborted test run leaks containers
		if [ -n "$(podman ps -aq 2>/dev/null)" ]; then
			log "removing leftover containers"
			podman rm -f -a -t 0 >&2 || true
		fi
		remaining=$(podman ps -aq 2>/dev/null || true)
	fi
	if pid=$(service_pid); then
		log "stopping podman service (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
	else
		log "podman service not running"
	fi
	rm -f "$PIDFILE" "$SOCK"
	kill_stray_conmon
	if [ -z "$remaining" ]; then
		umount_under "$DIR/storage" # e.g. the private bind mount of the overlay store
	else
		log "containers remain in $DIR/storage; leaving its mounts alone"
	fi
	net_cleanup
}

case "${1:-start}" in
start) ;;
stop) do_stop; exit 0 ;;
purge)
	do_stop
	umount_under "$DIR" # leftovers of a crashed run (overlay/shm mounts of containers)
	# never rm -rf through a mount
	if awk -v d="$DIR/" 'index($2 "/", d) == 1 {found=1} END {exit !found}' /proc/mounts; then
		die "something is still mounted under $DIR; not deleting it"
	fi
	rm -rf "$DIR"
	log "removed $DIR"
	exit 0
	;;
*) die "usage: $0 [start|stop|purge]" ;;
esac

# on failure, give `eval "$(setup.sh)"` something that fails instead of an empty string
trap 'rc=$?; [ "$rc" -eq 0 ] || echo "false # tc-podman setup failed (exit $rc)" >&3' EXIT

mkdir -p "$DIR"
exec 9>"$DIR/.setup.lock"
flock 9 # serialise concurrent callers (e.g. several test workers)

# ---------------------------------------------------------------- 1. packages
pkg_missing() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
	done
}
apt_install() {
	local missing
	missing=$(pkg_missing "$@")
	[ -n "$missing" ] || return 0
	log "apt-get install: $(echo $missing)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	# shellcheck disable=SC2086
	apt-get install -y --no-install-recommends $missing
}
apt_install "${HOST_PKGS[@]}"

# ---------------------------------------------------------------- 2. configuration
mkdir -p "$DIR/storage" "$DIR/run" "$DIR/tmp"
hard_nofile=$(ulimit -Hn); hard_nproc=$(ulimit -Hu)
[ "$hard_nofile" = unlimited ] && hard_nofile=1048576
[ "$hard_nproc" = unlimited ] && hard_nproc=1048576
[ "$hard_nofile" -gt 1048576 ] && hard_nofile=1048576
[ "$hard_nproc" -gt 4096 ] && hard_nproc=4096 # per host uid, plenty for postgres
RUNC=$(command -v runc || echo /usr/sbin/runc)
cat >"$DIR/containers.conf.new" <<EOF
# written by tc-podman/setup.sh
[containers]
# podman's default rlimits exceed the hard limits here and raising them needs CAP_SYS_RESOURCE
default_ulimits = ["nofile=$hard_nofile:$hard_nofile", "nproc=$hard_nproc:$hard_nproc"]

[engine]
# crun fails on this host ("cgroups in hybrid mode not supported")
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$DIR/events.log"
# conmon of every exec session (testcontainers' readiness probe is an exec) lingers this
# long waiting for the client to read the exit code; podman's default is 300s
exit_command_delay = 30
tmp_dir = "$DIR/tmp"
image_copy_tmp_dir = "$DIR/tmp"

[engine.runtimes]
runc = ["$RUNC", "/usr/sbin/runc", "/usr/bin/runc"]

[network]
network_backend = "cni"
EOF
# storage driver: a store stays with the driver that created it
existing_driver=
if [ -d "$DIR/storage/overlay-layers" ]; then existing_driver=overlay
elif [ -d "$DIR/storage/vfs-layers" ]; then existing_driver=vfs; fi
want_driver=${TC_PODMAN_STORAGE_DRIVER:-auto}
case "$want_driver" in auto | overlay | vfs) ;; *) die "TC_PODMAN_STORAGE_DRIVER must be auto, overlay or vfs" ;; esac
if [ -n "$existing_driver" ]; then
	if [ "$want_driver" != auto ] && [ "$want_driver" != "$existing_driver" ]; then
		die "$DIR/storage uses $existing_driver; run '$0 purge' first to switch to $want_driver"
	fi
	driver=$existing_driver
elif [ "$want_driver" != auto ]; then
	driver=$want_driver
else
	# kernel overlayfs: container creation is instant (vfs copies the whole image each time)
	driver=vfs
	probe=$DIR/tmp/overlay-probe
	rm -rf "$probe"
	mkdir -p "$probe/l" "$probe/u" "$probe/w" "$probe/m"
	echo ok >"$probe/l/f"
	if mount -t overlay overlay -o "lowerdir=$probe/l,upperdir=$probe/u,workdir=$probe/w" "$probe/m" 2>/dev/null; then
		if [ "$(cat "$probe/m/f" 2>/dev/null)" = ok ] && echo x >"$probe/m/g" 2>/dev/null; then driver=overlay; fi
		umount "$probe/m" || true
	fi
	grep -q " $probe/m " /proc/mounts || rm -rf "$probe"
fi
log "storage driver: $driver"
cat >"$DIR/storage.conf.new" <<EOF
# written by tc-podman/setup.sh
[storage]
driver = "$driver"
graphroot = "$DIR/storage"
runroot = "$DIR/run"
EOF
conf_changed=
for f in containers.conf storage.conf; do
	if cmp -s "$DIR/$f.new" "$DIR/$f"; then rm -f "$DIR/$f.new"; else mv -f "$DIR/$f.new" "$DIR/$f"; conf_changed=1; fi
done

# ---------------------------------------------------------------- 3. postgres image
write_entrypoint() { # $1 = destination file
	cat >"$1" <<'ENTRYPOINT_EOF'
#!/bin/sh
# Entrypoint of the locally built postgres test image. On first start it makes the cluster
# from POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB (and POSTGRES_INITDB_ARGS,
# POSTGRES_HOST_AUTH_METHOD), then serves on all interfaces, port 5432, as user postgres.
set -e
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
self=/usr/local/bin/docker-entrypoint.sh
if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown -R postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	export HOME=/var/lib/postgresql
	# full path: busybox sh would pick its own, smaller setpriv applet
	exec /usr/bin/setpriv --reuid=postgres --regid=postgres --init-groups "$self" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	user=${POSTGRES_USER:-postgres}
	db=${POSTGRES_DB:-$user}
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}; else auth=${POSTGRES_HOST_AUTH_METHOD:-trust}; fi
	pwfile=$(mktemp)
	printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words
	initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-}
	rm -f "$pwfile"
	printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
	if [ "$db" != postgres ]; then
		pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k /var/run/postgresql" -w start
		printf 'CREATE DATABASE "%s";\n' "$(printf '%s' "$db" | sed 's/"/""/g')" |
			psql -h /var/run/postgresql -U "$user" -d postgres -v ON_ERROR_STOP=1 -q
		pg_ctl -D "$PGDATA" -m fast -w stop
	fi
	echo 'PostgreSQL init process complete; ready for start up.'
fi
if [ "$1" = postgres ]; then
	shift
	exec postgres -c listen_addresses='*' "$@"
fi
exec "$@"
ENTRYPOINT_EOF
	chmod 0755 "$1"
}

write_assemble() { # runs inside the build chroot: builds the minimal rootfs in /tc-out
	cat >"$1" <<'ASSEMBLE_EOF'
#!/bin/bash
set -euo pipefail
V=$1
OUT=/tc-out
rm -rf "$OUT"
mkdir -p "$OUT"
cd "$OUT"
mkdir -p usr/bin usr/sbin usr/lib/x86_64-linux-gnu usr/lib64 usr/lib/locale usr/local/bin usr/share \
	etc/ld.so.conf.d dev proc sys run root tmp home var/tmp var/run/postgresql \
	var/lib/postgresql/data docker-entrypoint-initdb.d usr/lib/postgresql usr/share/postgresql
ln -s usr/bin bin
ln -s usr/sbin sbin
ln -s usr/lib lib
ln -s usr/lib64 lib64
chmod 1777 tmp var/tmp
chmod 0700 root

# PostgreSQL server + client programs, minus the LLVM JIT provider and build files
cp -a "/usr/lib/postgresql/$V" usr/lib/postgresql/
rm -rf "usr/lib/postgresql/$V/lib/bitcode" "usr/lib/postgresql/$V/lib/pgxs" \
	"usr/lib/postgresql/$V/lib/llvmjit.so" "usr/lib/postgresql/$V/lib/llvmjit_types.bc"
cp -a "/usr/share/postgresql/$V" usr/share/postgresql/
rm -rf "usr/share/postgresql/$V/man"
# listen on all interfaces by default
sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "usr/share/postgresql/$V/postgresql.conf.sample"
grep -q "^listen_addresses = '\*'" "usr/share/postgresql/$V/postgresql.conf.sample"

cp /usr/bin/setpriv usr/bin/setpriv
cp /usr/bin/locale usr/bin/locale # initdb runs "locale -a" to import the OS collations
cp /bin/busybox usr/bin/busybox
for a in $(usr/bin/busybox --list); do
	[ -e "usr/bin/$a" ] || [ -L "usr/bin/$a" ] || ln -s busybox "usr/bin/$a"
done

# shared libraries of every ELF file we ship (resolved inside this chroot)
# (no /proc in the chroot, hence no process substitution)
find "/usr/lib/postgresql/$V" -type f \( -perm -u+x -o -name '*.so' \) \
	! -name 'llvmjit*' ! -path '*/pgxs/*' ! -path '*/bitcode/*' >/tmp/tc-elfs.txt
printf '%s\n' /usr/bin/setpriv /usr/bin/locale >>/tmp/tc-elfs.txt
mapfile -t elfs </tmp/tc-elfs.txt
rm -f /tmp/tc-elfs.txt
libs=$(for f in "${elfs[@]}"; do
	out=$(ldd "$f" 2>&1) || continue # not a dynamic ELF file
	if grep -q 'not found' <<<"$out"; then echo "missing library for $f: $out" >&2; exit 1; fi
	awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$out"
done | sort -u)
for l in $libs; do
	d=$(readlink -f "$(dirname "$l")")
	mkdir -p "$OUT$d"
	cp -L "$l" "$OUT$d/$(basename "$l")"
done
cp /etc/ld.so.conf "$OUT/etc/ld.so.conf"
cp /etc/ld.so.conf.d/*.conf "$OUT/etc/ld.so.conf.d/"
ldconfig -r "$OUT"

# locales (C.UTF-8 + en_US.UTF-8 like the official image), time zones
cp -a /usr/lib/locale/C.utf8 /usr/lib/locale/locale-archive usr/lib/locale/
cp -a /usr/share/zoneinfo usr/share/
ln -s /usr/share/zoneinfo/Etc/UTC etc/localtime
echo Etc/UTC >etc/timezone

cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >etc/group <<'EOF'
root:x:0:
postgres:x:999:
nogroup:x:65534:
EOF
cat >etc/nsswitch.conf <<'EOF'
passwd: files
group: files
shadow: files
hosts: files dns
EOF
cp /usr/lib/os-release etc/os-release
touch etc/hosts etc/resolv.conf etc/hostname

chown -R 999:999 var/lib/postgresql var/run/postgresql
chmod 1777 var/lib/postgresql/data
chmod 3777 var/run/postgresql

# self-check: the programs must start inside the minimal tree
chroot "$OUT" /usr/lib/postgresql/$V/bin/postgres --version
chroot "$OUT" /usr/lib/postgresql/$V/bin/psql --version
chroot "$OUT" /usr/lib/postgresql/$V/bin/initdb --version
chroot "$OUT" /usr/bin/setpriv --version
chroot "$OUT" /bin/sh -c 'true'
chroot "$OUT" /usr/bin/locale -a
ASSEMBLE_EOF
	chmod 0755 "$1"
}

in_chroot() { # in_chroot ROOT cmd...: run with a clean environment
	local root=$1; shift
	env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
		DEBIAN_FRONTEND=noninteractive HOME=/root chroot "$root" "$@"
}

build_image() {
	local B=$DIR/build R V PGVER t0=$SECONDS proxy=
	R=$B/chroot
	apt_install debootstrap
	mkdir -p "$B"
	eval "$(apt-config shell proxy Acquire::http::Proxy)"
	if [ -n "$proxy" ] && [ -z "${http_proxy:-}" ]; then export http_proxy=$proxy; fi

	if [ ! -f "$R/.tc-chroot-ok" ]; then
		log "debootstrap $SUITE (minbase) into $R"
		rm -rf "$R"
		debootstrap --variant=minbase "$SUITE" "$R" "$MIRROR" >"$B/debootstrap.log" 2>&1 ||
			{ tail -n 30 "$B/debootstrap.log" >&2; die "debootstrap failed (log: $B/debootstrap.log)"; }
		printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d" # no service starts in the chroot
		chmod 0755 "$R/usr/sbin/policy-rc.d"
		mkdir -p "$R/etc/postgresql-common"
		echo 'create_main_cluster = false' >"$R/etc/postgresql-common/createcluster.conf"
		cat >"$R/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SEC_MIRROR $SUITE-security main
EOF
		if [ -n "$proxy" ]; then
			printf 'Acquire::http::Proxy "%s";\n' "$proxy" >"$R/etc/apt/apt.conf.d/99tc-proxy"
		fi
		rm -f "$R/etc/resolv.conf"
		cat /etc/resolv.conf >"$R/etc/resolv.conf" 2>/dev/null || true
		log "apt-get install postgresql in the chroot"
		{
			in_chroot "$R" apt-get update &&
				in_chroot "$R" apt-get install -y --no-install-recommends \
					postgresql busybox-static locales util-linux &&
				in_chroot "$R" localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8
		} >"$B/chroot-apt.log" 2>&1 ||
			{ tail -n 30 "$B/chroot-apt.log" >&2; die "package installation in the chroot failed (log: $B/chroot-apt.log)"; }
		touch "$R/.tc-chroot-ok"
	fi

	V=$(ls "$R/usr/lib/postgresql" | sort -n | tail -n 1)
	[ -x "$R/usr/lib/postgresql/$V/bin/postgres" ] || die "no postgres binary in the chroot"
	PGVER=$(in_chroot "$R" dpkg-query -W -f='${Version}' "postgresql-$V")
	log "assembling a minimal rootfs for PostgreSQL $PGVER"
	write_assemble "$R/tc-assemble.sh"
	in_chroot "$R" /tc-assemble.sh "$V" >"$B/assemble.log" 2>&1 ||
		{ tail -n 30 "$B/assemble.log" >&2; die "rootfs assembly failed (log: $B/assemble.log)"; }
	write_entrypoint "$R/tc-out/usr/local/bin/docker-entrypoint.sh"
	ln -s usr/local/bin/docker-entrypoint.sh "$R/tc-out/docker-entrypoint.sh"
	tar -C "$R/tc-out" --numeric-owner -cf "$B/rootfs.tar" .
	log "rootfs: $(du -sh "$R/tc-out" | cut -f1)"

	log "podman import -> $IMAGE"
	podman import -q \
		--change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
		--change 'CMD ["postgres"]' \
		--change "ENV PATH=/usr/lib/postgresql/$V/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
		--change "ENV PG_MAJOR=$V" \
		--change "ENV PG_VERSION=$PGVER" \
		--change 'ENV PGDATA=/var/lib/postgresql/data' \
		--change 'ENV LANG=en_US.utf8' \
		--change 'EXPOSE 5432' \
		--change 'STOPSIGNAL SIGINT' \
		--change 'WORKDIR /' \
		--change "LABEL tc-podman.recipe=$RECIPE" \
		--change "LABEL tc-podman.postgresql=$PGVER" \
		--message "tc-podman: Debian $SUITE postgresql $PGVER" \
		"$B/rootfs.tar" "$IMAGE" >&2
	rm -f "$B/rootfs.tar"
	if [ "${TC_PODMAN_KEEP_BUILD:-}" != 1 ]; then rm -rf "$B"; fi
	log "image built in $((SECONDS - t0))s"
}

smoke_test() { # start the image once, as testcontainers would
	local name=tc-podman-smoke-$$ i ok=
	podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
	podman run -d --name "$name" -e POSTGRES_USER=smoke -e POSTGRES_PASSWORD=smoke -e POSTGRES_DB=smokedb \
		"$IMAGE" >/dev/null
	for i in $(seq 1 120); do
		if podman exec "$name" sh -c "PGPASSWORD=smoke psql -U smoke -d smokedb -h 127.0.0.1 -tAc 'select 42'" 2>/dev/null | grep -qx 42; then
			ok=1
			break
		fi
		sleep 0.5
	done
	if [ -z "$ok" ]; then
		podman logs "$name" >&2 || true
		podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
		return 1
	fi
	podman rm -f -t 0 "$name" >/dev/null
}

image_recipe() { podman image inspect --format '{{ index .Labels "tc-podman.recipe" }}' "$1" 2>/dev/null; }

need_build=
if [ "${TC_PODMAN_REBUILD:-}" = 1 ]; then
	need_build=1
elif ! podman image exists "$IMAGE"; then
	need_build=1
else
	r=$(image_recipe "$IMAGE" || true)
	if [ -z "$r" ] || [ "$r" = "<no value>" ]; then
		log "$IMAGE exists and was not built by this script; keeping it"
	elif [ "$r" != "$RECIPE" ]; then
		log "$IMAGE has recipe $r, want $RECIPE: rebuilding"
		need_build=1
	fi
fi
if [ -n "$need_build" ]; then
	# names that point at the previous build move to the new one
	old_tags=()
	if podman image exists "$IMAGE"; then
		read -r -a old_tags <<<"$(podman image inspect --format '{{range .RepoTags}}{{.}} {{end}}' "$IMAGE" 2>/dev/null || true)"
	fi
	build_image
	log "smoke test of $IMAGE"
	t0=$SECONDS
	if ! smoke_test; then
		podman untag "$IMAGE" >&2 || true
		die "the freshly built image failed its smoke test"
	fi
	log "smoke test passed in $((SECONDS - t0))s"
	for t in "${TAGS[@]}" "${old_tags[@]}"; do podman tag "$IMAGE" "$t"; done
	podman image prune -f >/dev/null 2>&1 || true # the untagged previous build, if any
else
	for t in "${TAGS[@]}"; do podman image exists "$t" || podman tag "$IMAGE" "$t"; done
	log "image cached: ${TAGS[*]}"
fi

# ---------------------------------------------------------------- 4. API service
if pid=$(service_pid) && [ -S "$SOCK" ] && [ -z "$conf_changed" ]; then
	log "podman service already running (pid $pid)"
else
	if pid=$(service_pid); then # running containers survive this (they belong to conmon)
		log "restarting podman service (pid $pid): configuration changed or socket missing"
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
	fi
	rm -f "$SOCK"
	log "starting podman system service on unix://$SOCK"
	# no fd 3 (our stdout, maybe a $(...) pipe) and no fd 9 (the lock) for the daemon
	setsid podman system service --time=0 "unix://$SOCK" </dev/null >>"$LOGFILE" 2>&1 3>&- 9>&- &
	echo $! >"$PIDFILE"
	ok=
	for i in $(seq 1 150); do
		if [ -S "$SOCK" ] && podman --remote --url "unix://$SOCK" version >/dev/null 2>&1; then ok=1; break; fi
		kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
		sleep 0.2
	done
	[ -n "$ok" ] || { tail -n 20 "$LOGFILE" >&2; die "podman service did not come up (log: $LOGFILE)"; }
	log "podman service running (pid $(cat "$PIDFILE"))"
fi

# ---------------------------------------------------------------- 5. exports
{
	printf 'export DOCKER_HOST=%q\n' "unix://$SOCK"
	printf 'export TESTCONTAINERS_RYUK_DISABLED=true\n'
	printf 'export TESTCONTAINERS_CONNECTION_MODE=docker_host\n'
	printf 'export TC_HOST=127.0.0.1\n'
	printf 'export CONTAINERS_CONF=%q\n' "$CONTAINERS_CONF"
	printf 'export CONTAINERS_STORAGE_CONF=%q\n' "$CONTAINERS_STORAGE_CONF"
} >&3
