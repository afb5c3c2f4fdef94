#!/usr/bin/env bash
# A real single-node SLURM on this machine (localhost), for trying and testing the pipeline's
# SLURM profile (profiles/slurm/) without a cluster. No systemd: every daemon is started by hand.
#
#   sudo apt-get install -y --no-install-recommends slurmctld slurmd slurm-client slurmdbd munge mariadb-server
#   sudo tools/slurm-local.sh start     # munged, MariaDB, slurmdbd, slurmctld, slurmd; waits for the node to be idle
#   sinfo; sbatch --wrap hostname; sacct   # one node, one partition, one account, accounting on
#   sudo tools/slurm-local.sh stop      # stops what `start` started (by the pids in its state folder)
#   tools/slurm-local.sh status         # exit 0 when the node is up and idle or busy
#
# The cluster mirrors a small real one: one node with this machine's CPUs and memory (`slurmd -C`),
# one partition and one account, named after `slurm_partition` and `slurm_account` in
# profiles/slurm/config.yaml (so that profile runs here unchanged), and job accounting through
# slurmdbd on a local MariaDB (Snakemake's SLURM executor plugin asks `sacct` for job states and
# `sacctmgr` for the user's accounts). The node also advertises SLURM_LOCAL_GPUS (default 1) GPUs
# as a generic resource backed by /dev/null (no real device; torch still sees no CUDA), so a rule's
# `gpu` resource, which the plugin turns into `sbatch --gpus=N`, is scheduled and accounted as on
# a GPU cluster.
#
# Everything lives under SLURM_LOCAL_DIR (default /var/tmp/selfalign-slurm): config, state, spool,
# logs, the database. Nothing under /etc is written (the munge key is created only if the munge
# package did not make one). slurmd runs configless and links the config at /run/slurm/conf, where
# client commands on this machine (sinfo, sbatch, sacct, srun inside jobs) find it.
# `start` when it already runs only waits for the node; `stop` kills only the pids it recorded.
# Exit status of `start`: 0 up, 2 SLURM is not installed or not root (nothing was started), 1 failed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${SLURM_LOCAL_DIR:-/var/tmp/selfalign-slurm}"
PROFILE="${SLURM_LOCAL_PROFILE:-$ROOT/profiles/slurm/config.yaml}"
GPUS="${SLURM_LOCAL_GPUS:-1}"
CLUSTER=selfalign
export SLURM_CONF="$DIR/etc/slurm.conf"
DB_SOCKET=/run/mysqld/mysqld.sock   # slurmdbd's StorageHost=localhost connects through this socket

say() { echo "slurm-local: $*" >&2; }
die() { say "$*"; exit 1; }

# The value of `key:` in the profile (first match; quotes stripped).
profile_value() {
    sed -n "s/^[[:space:]]*$1:[[:space:]]*[\"']\{0,1\}\([^\"'#[:space:]]*\).*/\1/p" "$PROFILE" | head -n1
}

alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local t=$1 what=$2; shift 2
    for ((i = 0; i < t * 5; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    return 1
}

node_ready() { sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)$'; }

start_munge() {
    if [[ ! -s /etc/munge/munge.key ]]; then
        install -d -o munge -g munge -m 700 /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged is already serving this machine
    fi
    su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=/run/munge/munged.pid"
    cp /run/munge/munged.pid "$DIR/run/munged.pid"
    wait_for 20 munge sh -c 'munge -n | unmunge' || die "munged did not start (see /var/log/munge/munged.log)"
}

start_mariadb() {
    if alive "$DIR/mysql/mariadbd.pid"; then return 0; fi
    if [[ -S $DB_SOCKET ]]; then
        if mariadb --no-defaults --socket="$DB_SOCKET" -u root -e 'select 1' >/dev/null 2>&1; then
            die "another MariaDB/MySQL already listens on $DB_SOCKET; stop it first"
        fi
        rm -f "$DB_SOCKET"  # left by a server that was killed
    fi
    if [[ ! -d $DIR/mysql/mysql ]]; then
        rm -rf "$DIR/mysql"
        install -d -o mysql -g mysql "$DIR/mysql"
        mariadb-install-db --user=mysql --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
            --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: $DIR/log/mariadb-install.log"
    fi
    install -d -o mysql -g mysql /run/mysqld
    # No network: slurmdbd (as root, through unix_socket authentication) is its only client.
    mariadbd --no-defaults --user=mysql --datadir="$DIR/mysql" --socket="$DB_SOCKET" --skip-networking \
        --pid-file="$DIR/mysql/mariadbd.pid" --log-error="$DIR/mysql/mariadb.log" \
        --innodb-buffer-pool-size=64M >/dev/null 2>&1 &
    wait_for 60 mariadb mariadb --no-defaults --socket="$DB_SOCKET" -u root -e 'select 1' \
        || die "MariaDB did not start (see $DIR/mysql/mariadb.log)"
}

write_config() {
    local partition=$1 node
    node="$(slurmd -C | head -n1)"   # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
    [[ $node == NodeName=* ]] || die "slurmd -C gave no node line: $node"
    local gres="" gres_types=""
    if ((GPUS > 0)); then
        gres=" Gres=gpu:$GPUS"
        gres_types="GresTypes=gpu"
        # slurmd counts a GPU only with a device file; /dev/null stands in (SLURM binds nothing here).
        echo "NodeName=$(hostname) Name=gpu Count=$GPUS File=/dev/null" >"$DIR/etc/gres.conf"
    else
        : >"$DIR/etc/gres.conf"
    fi
    cat >"$DIR/etc/slurm.conf" <<EOF
# Written by tools/slurm-local.sh: one node (this machine), one partition, accounting through slurmdbd.
ClusterName=$CLUSTER
SlurmctldHost=$(hostname)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
$gres_types
ReturnToService=2
MpiDefault=none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# A cancelled job gets SIGTERM, then SIGKILL after KillWait seconds (default 30).
SlurmctldParameters=enable_configless
KillWait=5
MinJobAge=300
InactiveLimit=0
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
AccountingStorageEnforce=associations
JobCompType=jobcomp/none
$node$gres State=UNKNOWN
PartitionName=$partition Nodes=$(hostname) Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
# Written by tools/slurm-local.sh.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
}

start() {
    if [[ $EUID -ne 0 ]]; then say "must run as root (it starts munged, MariaDB and the SLURM daemons)"; exit 2; fi
    local b missing=()
    for b in munged munge slurmctld slurmd slurmdbd sinfo sacct sacctmgr mariadbd mariadb-install-db; do
        command -v "$b" >/dev/null || missing+=("$b")
    done
    if ((${#missing[@]})); then
        say "SLURM is not installed here (missing: ${missing[*]}); see the header of $0"
        exit 2
    fi
    local partition account
    partition="$(profile_value slurm_partition)"
    account="$(profile_value slurm_account)"
    [[ -n $partition && -n $account ]] || die "no slurm_partition/slurm_account in $PROFILE"
    install -d "$DIR"/{etc,state,spool,run,log}
    if alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid"; then
        say "already running"
    else
        write_config "$partition"
        start_munge
        start_mariadb
        if ! alive "$DIR/run/slurmdbd.pid"; then
            slurmdbd || die "slurmdbd did not start (see $DIR/log/slurmdbd.log)"
        fi
        wait_for 60 slurmdbd sacctmgr -n list cluster || die "slurmdbd does not answer (see $DIR/log/slurmdbd.log)"
        # The cluster, an account named as in the profile, and this user in it (idempotent).
        sacctmgr -n list cluster format=cluster%64 | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
        sacctmgr -n list account format=account%64 | grep -qw "$account" \
            || sacctmgr -i add account "$account" Cluster="$CLUSTER" Description=selfalign Organization=selfalign >/dev/null
        sacctmgr -n list assoc user="$(id -un)" account="$account" format=account%64 | grep -qw "$account" \
            || sacctmgr -i add user "$(id -un)" Account="$account" DefaultAccount="$account" Cluster="$CLUSTER" >/dev/null
        alive "$DIR/run/slurmctld.pid" || slurmctld || die "slurmctld did not start (see $DIR/log/slurmctld.log)"
        wait_for 30 slurmctld scontrol ping || die "slurmctld does not answer (see $DIR/log/slurmctld.log)"
        # slurmd runs configless, as on many clusters' compute nodes: it fetches the config from
        # slurmctld and links it at /run/slurm/conf, where commands inside a job (srun) find it.
        alive "$DIR/run/slurmd.pid" || slurmd --conf-server "$(hostname)" \
            || die "slurmd did not start (see $DIR/log/slurmd.log)"
    fi
    if ! wait_for 60 node node_ready; then
        sinfo -N -l >&2 || true
        die "the node did not become idle (see $DIR/log/slurmd.log, $DIR/log/slurmctld.log)"
    fi
    say "up: partition $partition, account $account; $(sinfo -h -N -o '%N %T, %c CPUs, %m MB, gres %G')"
}

stop() {
    local name pid pidfile
    # Jobs first (slurmctld must be up to cancel them), then the daemons in reverse order of start.
    if alive "$DIR/run/slurmctld.pid"; then scancel --user="$(id -un)" 2>/dev/null || true; fi
    for name in slurmd slurmctld slurmdbd mariadbd munged; do
        pidfile="$DIR/run/$name.pid"
        [[ $name == mariadbd ]] && pidfile="$DIR/mysql/mariadbd.pid"  # MariaDB writes as user mysql
        if alive "$pidfile"; then
            pid="$(cat "$pidfile")"
            kill "$pid" 2>/dev/null || true
            for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && { say "$name ($pid) did not stop, killing it"; kill -9 "$pid" 2>/dev/null || true; }
        fi
        rm -f "$pidfile"
    done
    say "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) node_ready && sinfo -N -o '%N %T %c %m %G' ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 64 ;;
esac
