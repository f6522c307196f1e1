"""User-facing error texts, in Traditional Chinese like the real service."""

MODEL_NOT_LOADED = "模型尚未載入，請檢查系統狀態"
NO_IMAGE_FIELD = "沒有上傳圖片檔案（缺少 image 欄位）"
NO_IMAGES_FIELD = "沒有上傳圖片檔案（缺少 images 欄位）"
EMPTY_FILENAME = "沒有選擇檔案"
BAD_EXTENSION = "不支援的檔案格式，僅接受 png、jpg、jpeg、bmp、tiff、tif"
UNREADABLE_IMAGE = "無法讀取圖片，請確認檔案是否為有效的影像"
INJECTED_MODEL_ERROR = "模型推論失敗（模擬器注入的錯誤）"
INJECTED_SUCCESS_FALSE = "推論未成功完成（模擬器注入的錯誤）"
UNKNOWN_MODEL = "不支援的模型，可用模型：segformer、oneformer"
BAD_CONFIG = "模擬器設定無效："
# The real service's upload views wrap Werkzeug's 413 in their catch-all 500.
TOO_LARGE_IN_VIEW = "處理失敗：413 Request Entity Too Large（請求內容超過 50 MB 上限）"
MODEL_SWITCHED = "已切換至 {model} 模型"

HTTP_ERRORS = {
    400: "請求格式錯誤",
    404: "找不到請求的資源",
    405: "不支援此請求方法",
    413: "檔案太大，單次上傳上限為 50 MB",
    500: "伺服器內部錯誤",
}
