import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// The built UI is embedded in the zhongshu binary; during development `npm run dev`
// proxies the API to a running `zhongshu demo`.
export default defineConfig({
  plugins: [vue()],
  build: {
    outDir: 'dist',
    chunkSizeWarningLimit: 1500,
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8080',
    },
  },
  test: {
    include: ['src/**/*.test.ts'],
  },
})
