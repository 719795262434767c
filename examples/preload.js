'use strict';
/**
 * Preload script: gives the renderer one narrow function instead of ipcRenderer itself,
 * so page code (and anything injected into it) cannot send arbitrary IPC messages.
 *
 * Use it with `new BrowserWindow({webPreferences: {preload: path.join(__dirname,
 * 'preload.js'), contextIsolation: true}})`; then, in the page:
 *
 *   await window.usage.track({ model: 'Stable Diffusion', imageCount: 4 });
 */

const { contextBridge, ipcRenderer } = require('electron');

contextBridge.exposeInMainWorld('usage', {
  track: (usage) => ipcRenderer.invoke('usage:track', usage),
});
