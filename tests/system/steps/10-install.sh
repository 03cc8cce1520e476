# SPDX-License-Identifier: LGPL-2.1-or-later
# What `meson install` put in place, and what an administrator runs after it.

step "installed files (meson install --destdir) and the administrator's first steps"
check_output "svmd.service is installed, with the test drop-in for the emulator" '50-kfd-emulator\.conf' \
        systemctl cat svmd.service
check_output "its ExecStart= is the installed daemon" '^ExecStart=/usr/(local/)?libexec/svmd$' \
        systemctl cat svmd.service
svmd_bin=$(printf '%s\n' "$last" | sed -n 's/^ExecStart=//p')
check "the daemon is installed" test -x "$svmd_bin"
check_output "its default configuration file is an absolute path" '\(default: /[^)]*/svmd\.conf\)' \
        "$svmd_bin" --help
config=$(printf '%s\n' "$last" | sed -n 's|.*--config=PATH.*(default: \(/[^)]*\)).*|\1|p')
note "configuration file: $config"
check "ldconfig finds the installed libsvmd" ldconfig
check_output "svmctl runs" '^svmctl ' svmctl --version
check "systemd-sysusers applies sysusers.d/svmd.conf" systemd-sysusers
check_output "the system user svmd exists" '^svmd:x:[0-9]+:[0-9]+:' getent passwd svmd
check_output "svmd is in the render group" '(^| )render( |$)' id -nG svmd
check_output "svmd is in the video group" '(^| )video( |$)' id -nG svmd
check "systemd-tmpfiles applies tmpfiles.d/svmd.conf" systemd-tmpfiles --create svmd.conf
check "it made the configuration's directory" test -d "${config%/*}"
check "the bus policy is where dbus reads it" test -f /usr/share/dbus-1/system.d/org.svmd1.conf
check "the activation file is where dbus reads it" test -f /usr/share/dbus-1/system-services/org.svmd1.service
check_output "polkit knows org.svmd1.manage" 'implicit active: *auth_admin_keep' \
        pkaction --verbose --action-id org.svmd1.manage

step "test fixtures: an unprivileged client and the emulated 4-GPU node"
check "create the user svmd-tester" systemd-sysusers --inline "u $tester - \"svmd system test client\""
check "kfdemu-ctl init --topology mi250-4.json" emu init --topology "$fixtures/topology.json"
check "hand the emulator's state to svmd" chown -R svmd:svmd "$KFDEMU_DIR"
