#!/usr/bin/env bash
# Mesa 25.0's lavapipe beside the system one (Debian 12 ships Mesa 22.3; current
# distributions and CI images ship Mesa 24-25, which compiles shaders differently): the
# mesa-vulkan-drivers package of bookworm-backports and the libdrm it needs, unpacked into
# a folder, nothing installed over the system driver.
#
#   eval "$(.ci/mesa25-env.sh)"     # this shell now uses Mesa 25's lavapipe
#
# Prints the variables to export. The first call downloads about 15 MB into $MESA25_DIR
# (default: target/mesa25) and needs root for the apt source entry.
set -euo pipefail
dir=${MESA25_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/mesa25}
lib=$dir/root/usr/lib/x86_64-linux-gnu
if [ ! -f "$lib/libvulkan_lvp.so" ]; then
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # The same mirror as the system's bookworm entry (deb822 or one-line format).
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/debian.sources | head -1 | awk '{print $2}' || true)
    [ -n "$uri" ] || uri=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$uri" ] || { echo "mesa25-env: no Debian bookworm apt source to take the mirror from" >&2; exit 1; }
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
      > /etc/apt/sources.list.d/wgcnn-bookworm-backports.sources
  fi
  apt-get update -qq >&2
  ver=$(apt-cache madison mesa-vulkan-drivers | awk '/bookworm-backports/ {print $3; exit}')
  [ -n "$ver" ] || { echo "mesa25-env: no mesa-vulkan-drivers in bookworm-backports" >&2; exit 1; }
  mkdir -p "$dir/debs"
  (cd "$dir/debs" && apt-get download -qq "mesa-vulkan-drivers=$ver" \
      libdrm2/bookworm-backports libdrm-amdgpu1/bookworm-backports >&2)
  for f in "$dir"/debs/*.deb; do dpkg -x "$f" "$dir/root"; done
fi
api=$(sed -n 's/.*"api_version": *"\([^"]*\)".*/\1/p' "$dir/root/usr/share/vulkan/icd.d/lvp_icd.json" | head -1)
printf '{"ICD":{"api_version":"%s","library_path":"%s/libvulkan_lvp.so"},"file_format_version":"1.0.0"}\n' \
  "$api" "$lib" > "$dir/lvp_icd.json"
echo "export VK_ICD_FILENAMES=$dir/lvp_icd.json VK_DRIVER_FILES=$dir/lvp_icd.json LD_LIBRARY_PATH=$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
