// Package rootfs prepares root filesystems from untrusted chroot tarballs for
// unprivileged builds, and runs them: a secure in-root resolver and
// descriptor-based bind mounts that no symlink planted in the tree can
// redirect to the host, a codec for file capabilities
// (security.capability v1/v2/v3) that keeps them across a uid shift into a
// user namespace, a one-pass tarball unpacker with id shifting, and a
// builders/target.Target that runs commands in the unpacked chroot inside
// user, mount, pid, uts and ipc namespaces.
//
// Linux only.
package rootfs
