# dom0 part of smoke-kernel-frontend: the shell stub backend, then the domU; once the domU has
# reported, check that the backend side reached Connected too.
# shellcheck shell=dash

# The backend must be watching before xl creates the device (libxl's 10 s InitWait deadline).
tb_start_stub_vsnd_backend
tb_create_domu || exit 1
tb_wait_domu
be=/local/domain/0/backend/vsnd/$(tb_domid)/0
tb_check backend-connected "$be/state=$(xenstore-read "$be/state" 2>&1)" tb_xs_is "$be/state" 4
